"""Template helpers of the web UI: times in a site's zone (UTC on hover), sizes, query strings."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django import template
from django.utils import timezone
from django.utils.safestring import mark_safe

from fleet.web.html import escape

register = template.Library()


def _zone(tz: str | None) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(tz) if tz else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


@register.filter
def at(value: dt.datetime | None, tz: str | None = None):
    """A time in the zone `tz` (a site's), the UTC time in its hover title; "—" for none."""
    if not value:
        return "—"
    local = value.astimezone(_zone(tz))
    utc = value.astimezone(dt.UTC)
    # Rendered once per row of every list page: f-strings, not format_html (fleet.web.html).
    return mark_safe(  # noqa: S308 - only formatted times, the zone's name escaped
        f'<time datetime="{utc.isoformat()}" title="{utc.strftime("%Y-%m-%d %H:%M:%S")} UTC">'
        f"{escape(local.strftime('%Y-%m-%d %H:%M:%S %Z'))}</time>"
    )


@register.filter
def ago(value: dt.datetime | None) -> str:
    """How long ago, coarse (42 s, 5 min, 3 h, 2 d)."""
    if not value:
        return "never"
    seconds = int((timezone.now() - value).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@register.filter
def bytesize(value: int | float | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


@register.filter
def signed_percent(value: float | None) -> str:
    """A relative change: 0.25 -> "+25%", -0.1 -> "-10%"."""
    return "—" if value is None else f"{value * 100:+.0f}%"


@register.simple_tag(takes_context=True)
def query(context, **changes) -> str:
    """The current query string with `changes` applied (None removes a key): for links that keep filters."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def words(value) -> str:
    """A code as words: never_seen -> never seen."""
    return str(value or "").replace("_", " ")
