"""Uplink priority classes."""

from __future__ import annotations

from collections.abc import Iterable

# Highest priority first; the server's bandwidth policy names the same classes.
from protocol.vocab import UPLINK_CLASSES

__all__ = ["UPLINK_CLASSES", "normalize_priority"]


def normalize_priority(order: Iterable[str] | None) -> tuple[str, ...]:
    """A full priority order: the classes named in `order` first, the rest in default order."""
    if not order:
        return UPLINK_CLASSES
    seen: list[str] = []
    for cls in order:
        if cls not in UPLINK_CLASSES:
            raise ValueError(f"unknown uplink class {cls!r}")
        if cls not in seen:
            seen.append(cls)
    return (*seen, *(c for c in UPLINK_CLASSES if c not in seen))
