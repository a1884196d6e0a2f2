"""Tables of the OTA pages (django-tables2)."""

import django_tables2 as tables
from django.utils.html import format_html

from fleet.templatetags.fleet_ui import bytesize
from fleet.web.tables import BadgeColumn, TimeColumn
from ota.models import Deployment, DeviceUpdate, ModelArtifact, Release


class ArtifactTable(tables.Table):
    size = tables.Column(attrs={"td": {"class": "num"}})
    sha256 = tables.Column(verbose_name="sha256")
    hardware = tables.Column(empty_values=(), orderable=False)
    created_at = TimeColumn(verbose_name="Uploaded")

    class Meta:
        model = ModelArtifact
        fields = ("name", "version", "size", "sha256", "hardware", "created_at")
        empty_text = "No model artifacts. Upload an ONNX model to make a release of it."

    def render_size(self, value):
        return bytesize(value)

    def render_sha256(self, value):
        return format_html('<code title="{}">{}…</code>', value, value[:12])

    def render_hardware(self, record):
        return ", ".join(sorted(h.name for h in record.hardware_models.all())) or "any"


class ReleaseTable(tables.Table):
    release = tables.Column(empty_values=(), orderable=False, linkify=("ota:release", {"pk": tables.A("pk")}))
    hardware = tables.Column(empty_values=(), orderable=False)
    expires_at = TimeColumn(verbose_name="Expires")

    class Meta:
        model = Release
        fields = ("release", "serial", "version", "hardware", "expires_at", "notes")
        order_by = ("-serial",)
        empty_text = "No releases. Sign one from a model artifact."

    def render_release(self, record):
        return str(record)

    def render_hardware(self, record):
        return ", ".join(sorted(h.name for h in record.hardware_models.all()))


class DeploymentTable(tables.Table):
    name = tables.Column(linkify=("ota:deployment", {"pk": tables.A("pk")}))
    release = tables.Column(orderable=False)
    state = BadgeColumn()
    created_at = TimeColumn(verbose_name="Created")
    started_at = TimeColumn(verbose_name="Started")
    finished_at = TimeColumn(verbose_name="Finished")

    class Meta:
        model = Deployment
        fields = ("name", "release", "state", "state_reason", "created_at", "started_at", "finished_at")
        order_by = ("-created_at",)
        empty_text = "No deployment here. Create one to ship a release to cameras."


class DeviceUpdateTable(tables.Table):
    device = tables.Column(accessor="device__name", verbose_name="Camera",
                           linkify=("telemetry:camera", {"device_id": tables.A("device__device_id")}))  # fmt: skip
    wave = tables.Column()
    state = BadgeColumn()
    finished_at = TimeColumn(verbose_name="Finished", site="device__site")

    class Meta:
        model = DeviceUpdate
        fields = ("device", "wave", "state", "reason", "progress", "finished_at")
        empty_text = "No camera in this state."
