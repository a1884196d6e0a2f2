"""Tables of the registry pages (django-tables2). Rows come from devices.selectors."""

import django_tables2 as tables
from django.forms.utils import flatatt
from django.urls import reverse
from django.utils.safestring import mark_safe

from devices.models import DeviceGroup, SavedFilter, Site
from devices.models_identity import EnrollmentToken
from devices.selectors import PREFETCHED_GROUPS, PREFETCHED_TAGS
from fleet.templatetags.fleet_ui import at
from fleet.web.html import badge, escape
from fleet.web.tables import TimeColumn

NARROW = {"th": {"class": "hide-narrow"}, "td": {"class": "hide-narrow"}}


def connectivity(device) -> str:
    if device.last_seen_at is None:
        return "never_seen"
    status = getattr(device, "status", None)
    return "online" if status is not None and status.online else "offline"


class DeviceTable(tables.Table):
    """The cameras table. Only indexed columns sort, so a sorted page stays fast at 100,000 rows."""

    device = tables.CheckBoxColumn(
        accessor="device_id",
        attrs={
            "th__input": {"data-select-all": "device", "aria-label": "Select every camera on this page"},
            "td__input": {"data-pick": "1", "form": "bulk-form", "aria-label": "Select"},
        },
    )
    name = tables.Column(linkify=("telemetry:camera", {"device_id": tables.A("device_id")}))
    device_id = tables.Column(verbose_name="Device id", attrs=NARROW)
    connectivity = tables.Column(empty_values=(), orderable=False, verbose_name="Online")
    state = tables.Column()
    site = tables.Column(accessor="site__name", orderable=False, verbose_name="Site")
    hardware_model = tables.Column(
        accessor="hardware_model__name", orderable=False, verbose_name="Hardware", attrs=NARROW
    )
    model_version = tables.Column(orderable=False, verbose_name="Model")
    agent_version = tables.Column(orderable=False, verbose_name="Agent", attrs=NARROW)
    last_seen_at = tables.Column(verbose_name="Last seen")
    tags = tables.Column(empty_values=(), orderable=False, attrs=NARROW)
    groups = tables.Column(empty_values=(), orderable=False, attrs=NARROW)
    serial = tables.Column(orderable=False, attrs=NARROW)

    # Columns a person may hide (remembered per user); the others always show.
    OPTIONAL = (
        "device_id",
        "site",
        "hardware_model",
        "model_version",
        "agent_version",
        "last_seen_at",
        "tags",
        "groups",
        "serial",
    )
    DEFAULT_HIDDEN = ("agent_version", "groups", "serial")

    # Newest first by default, as the API lists them: with a filter, PostgreSQL walks the (site, id)
    # or (hardware_model, id) index instead of the whole name index (bench/ui.py: 2.2x -> see README).
    id = tables.Column(visible=False)

    class Meta:
        attrs = {"class": "devices"}
        order_by = ("-id",)
        empty_text = "No camera matches. Clear the filter, or enroll cameras with an enrollment token."

    def render_connectivity(self, record):
        value = connectivity(record)
        return badge(value, value.replace("_", " "))

    # The rows in Python: django-tables2 renders each cell through its generic machinery and
    # format_html costs ~0.1 ms a cell; at 100,000 devices that was most of the page (bench/ui.py).
    # Every value below goes through escape() (fleet.web.html) before joining.
    def body_html(self) -> str:
        rows_page = self.page.object_list if getattr(self, "page", None) else self.rows
        columns = [(c.name, flatatt(c.attrs.get("td", {}))) for c in self.columns]
        link = reverse("telemetry:camera", args=["-"])[:-2]

        def text(value) -> str:
            return escape(value) if value else "—"

        cell = {
            "device": lambda d: (
                f'<input type="checkbox" name="device" value="{escape(d.device_id)}" data-pick="1" '
                f'form="bulk-form" aria-label="Select {escape(d.name)}">'
            ),
            "name": lambda d: f'<a href="{link}{escape(d.device_id)}/">{escape(d.name)}</a>',
            "device_id": lambda d: text(d.device_id),
            "connectivity": self.render_connectivity,
            "state": lambda d: self.render_state(d.state),
            "site": lambda d: text(d.site.name if d.site_id else ""),
            "hardware_model": lambda d: text(d.hardware_model.name if d.hardware_model_id else ""),
            "model_version": lambda d: text(d.model_version),
            "agent_version": lambda d: text(d.agent_version),
            "last_seen_at": lambda d: self.render_last_seen_at(d.last_seen_at, d),
            "tags": self.render_tags,
            "groups": lambda d: text(self.render_groups(d)),
            "serial": lambda d: text(d.serial),
        }
        out = []
        for row in rows_page:
            d = row.record
            out.append(
                "<tr>" + "".join(f"<td{attrs}>{cell[name](d)}</td>" for name, attrs in columns) + "</tr>"
            )
        return mark_safe("".join(out))  # noqa: S308 - every value above is escaped

    def render_state(self, value):
        return badge(value)

    def render_last_seen_at(self, value, record):
        return at(value, record.site.timezone if record.site_id else None)

    def render_tags(self, record):
        names = sorted(t.name for t in getattr(record, PREFETCHED_TAGS, []))
        return mark_safe(" ".join(f'<span class="badge">{escape(n)}</span>' for n in names) or "—")  # noqa: S308 - escaped

    def render_groups(self, record):
        return ", ".join(sorted(g.name for g in getattr(record, PREFETCHED_GROUPS, [])))


class SiteTable(tables.Table):
    name = tables.Column(linkify=("devices:site", {"pk": tables.A("pk")}))
    device_count = tables.Column(
        verbose_name="Cameras", attrs={"td": {"class": "num"}, "th": {"class": "num"}}
    )

    class Meta:
        model = Site
        fields = ("name", "timezone", "address", "device_count")
        empty_text = "No sites yet. Add one, then enroll cameras into it."


class GroupTable(tables.Table):
    name = tables.Column(linkify=("devices:group", {"pk": tables.A("pk")}))
    device_count = tables.Column(
        verbose_name="Cameras", attrs={"td": {"class": "num"}, "th": {"class": "num"}}
    )

    class Meta:
        model = DeviceGroup
        fields = ("name", "description", "device_count")
        empty_text = "No groups yet. Groups target deployments and bandwidth policies."


class SavedFilterTable(tables.Table):
    name = tables.Column(linkify=("devices:saved-filter", {"pk": tables.A("pk")}))
    cameras = tables.TemplateColumn(
        '<a href="{% url "devices:list" %}?saved={{ record.pk }}">Show cameras</a>',
        orderable=False,
        verbose_name="",
    )

    class Meta:
        model = SavedFilter
        fields = ("name", "description", "criteria", "cameras")
        empty_text = "No saved filters. Filter the cameras list, then save the filter there: it becomes a dynamic group."


class EnrollmentTokenTable(tables.Table):
    status = tables.Column(empty_values=(), orderable=False)
    uses = tables.TemplateColumn("{{ record.uses }} / {{ record.max_uses }}", orderable=False)
    prefix = tables.Column(verbose_name="Key starts")
    site = tables.Column(accessor="site__name", orderable=False, verbose_name="Site")
    hardware_model = tables.Column(accessor="hardware_model__name", orderable=False, verbose_name="Hardware")
    expires_at = TimeColumn(verbose_name="Expires")
    actions = tables.TemplateColumn(
        template_name="devices/_token_actions.html", orderable=False, verbose_name=""
    )

    class Meta:
        model = EnrollmentToken
        fields = ("name", "prefix", "status", "uses", "site", "hardware_model", "expires_at", "actions")
        empty_text = "No enrollment tokens. Create one to enroll new cameras."

    def render_status(self, record):
        return badge(record.status, record.status.replace("_", " "))
