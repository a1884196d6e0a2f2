"""The architecture drawing names real modules: a path drawn in docs/architecture.md must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = re.compile(r"(?<![\w/.$])(?:\*/|[a-z_]+/)[\w/*]*(?:\.py|/)")


def _drawing() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## The code, drawn", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_every_module_in_the_architecture_drawing_exists():
    paths = set(PATH.findall(_drawing()))
    assert len(paths) > 30  # the drawing names the modules along each path
    missing = [p for p in sorted(paths) if not list(ROOT.glob(p.rstrip("/")))]
    assert missing == []
