"""HTML for the hot paths of list pages: the stdlib's escape, without Django's lazy-string wrapper.

Django's `escape` and `format_html` check for lazy strings and safe strings on every call; in a
50-row cameras page with a few hundred options that was a fifth of the page's time (bench/ui.py).
"""

from __future__ import annotations

import html

from django.utils.safestring import SafeString, mark_safe


def escape(text: object) -> str:
    """`text` escaped for HTML; a safe string (one with __html__) is kept as it is, as Django does."""
    return text.__html__() if hasattr(text, "__html__") else html.escape(str(text))


def badge(value: str, label: str | None = None) -> SafeString:
    """<span class="badge {value}">{label, else value}</span>, both escaped."""
    text = value if label is None else label
    return mark_safe(f'<span class="badge {escape(value)}">{escape(text)}</span>')  # noqa: S308 - escaped
