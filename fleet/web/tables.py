"""Columns shared by the UI's tables."""

import django_tables2 as tables
from django.utils.html import format_html

from fleet.templatetags.fleet_ui import at
from fleet.web.html import badge


class TimeColumn(tables.Column):
    """A time in the zone of the record's site (UTC without one), UTC on hover."""

    def __init__(self, *args, site: str = "site", **kwargs):
        super().__init__(*args, **kwargs)
        self.site_path = site.split("__")

    def render(self, value, record):
        site = record
        for part in self.site_path:
            site = getattr(site, part, None)
        return at(value, getattr(site, "timezone", None))


class BadgeColumn(tables.Column):
    """A state as a coloured badge (the CSS class is the state's code)."""

    def render(self, value, record, bound_column):
        # For a field with choices `value` is the display label; the badge's class needs the code.
        code = str(bound_column.accessor.resolve(record, quiet=True) or value)
        return badge(code, code.replace("_", " "))


class CountColumn(tables.Column):
    """A number of cameras, linking to the cameras list filtered by this row (`?<param>=<pk>`)."""

    def __init__(self, *args, param: str, **kwargs):
        kwargs.setdefault("verbose_name", "Cameras")
        kwargs.setdefault("attrs", {"td": {"class": "num"}, "th": {"class": "num"}})
        super().__init__(*args, **kwargs)
        self.param = param

    def render(self, value, record):
        return format_html('<a href="/cameras/?{}={}">{}</a>', self.param, record.pk, value)
