"""Tables of telemetry's pages (django-tables2)."""

import django_tables2 as tables
from django.utils.html import format_html

from fleet.templatetags.fleet_ui import at
from fleet.web.tables import TimeColumn
from telemetry.models import BandwidthPolicy, DeadLetter
from telemetry.models.events import Alert, AlertRule


def _tz(device) -> str | None:
    return device.site.timezone if device is not None and device.site_id else None


class AlertTable(tables.Table):
    pick = tables.CheckBoxColumn(
        accessor="pk",
        attrs={"th__input": {"data-select-all": "alert", "aria-label": "Select every alert on this page"},
               "td__input": {"data-pick": "1", "form": "ack-form", "name": "alert", "aria-label": "Select"}},
    )  # fmt: skip
    created_at = TimeColumn(verbose_name="Raised", site="device__site")
    rule = tables.Column(accessor="rule__name", orderable=False, verbose_name="Rule")
    label = tables.Column(accessor="event__label", orderable=False)
    score = tables.Column(accessor="event__score", orderable=False)
    device = tables.Column(accessor="device__name", orderable=False, verbose_name="Camera",
                           linkify=("telemetry:camera", {"device_id": tables.A("device__device_id")}))  # fmt: skip
    event = tables.Column(
        accessor="event__pk", orderable=False, linkify=("telemetry:event", {"pk": tables.A("event__pk")})
    )
    acknowledged_at = tables.Column(verbose_name="Acknowledged")
    ack = tables.TemplateColumn(template_name="telemetry/_ack.html", orderable=False, verbose_name="")

    class Meta:
        model = Alert
        fields = ("pick", "created_at", "rule", "label", "score", "device", "event", "acknowledged_at", "ack")
        order_by = ("-created_at",)
        empty_text = "No alerts match. Alert rules decide which events raise one."

    def render_score(self, value):
        return f"{value:.2f}"

    def render_acknowledged_at(self, value, record):
        who = record.acknowledged_by.username if record.acknowledged_by else ""
        return format_html("{} <span class='muted small'>{}</span>", at(value, _tz(record.device)), who)


class AlertRuleTable(tables.Table):
    name = tables.Column(linkify=("telemetry:alert-rule", {"pk": tables.A("pk")}))

    class Meta:
        model = AlertRule
        fields = ("name", "labels", "min_score", "quiet_start", "quiet_end", "enabled", "webhook_url")
        empty_text = "No alert rules. Add one to be told when a camera sees a person at night, say."


class PolicyTable(tables.Table):
    name = tables.Column(linkify=("telemetry:policy", {"pk": tables.A("pk")}))
    scope = tables.Column(empty_values=(), orderable=False)
    target = tables.Column(empty_values=(), orderable=False, verbose_name="Applies to")

    class Meta:
        model = BandwidthPolicy
        fields = ("name", "scope", "target", "priority", "max_kbps", "daily_budget_mb", "metered")
        empty_text = "No bandwidth policies: cameras use the protocol defaults. Add a fleet default first."

    def render_scope(self, record):
        return record.scope

    def render_target(self, record):
        return record.device or record.group or "every camera"


class DeadLetterTable(tables.Table):
    received_at = TimeColumn(verbose_name="Received")
    payload_head = tables.Column(empty_values=(), orderable=False, verbose_name="Payload (first bytes)")

    class Meta:
        model = DeadLetter
        fields = ("received_at", "device_id", "kind", "reason", "detail", "payload_size", "payload_head")
        order_by = ("-received_at",)
        empty_text = "Nothing refused: every message devices sent was accepted."

    def render_payload_head(self, record):
        text = bytes(record.payload).decode("utf-8", "replace")
        return format_html("<code>{}</code>", text[:160] + ("…" if len(text) > 160 else ""))
