"""HTML for the hot paths of list pages: the stdlib's escape, without Django's lazy-string wrapper.

Django's `escape` and `format_html` check for lazy strings and safe strings on every call; in a
50-row cameras page with a few hundred options that was a fifth of the page's time (bench/ui.py).
"""

from __future__ import annotations

import html


def escape(text: object) -> str:
    """`text` escaped for HTML; a safe string (one with __html__) is kept as it is, as Django does."""
    return text.__html__() if hasattr(text, "__html__") else html.escape(str(text))


def badge(value: str, label: str | None = None) -> str:
    """<span class="badge value">label</span>, both escaped."""
    return f'<span class="badge {escape(value)}">{escape(value if label is None else label)}</span>'
