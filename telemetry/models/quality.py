"""Model quality per device and model version: one row per telemetry window (protocol.up.ModelQuality),
and hourly rollups of them. The rollout engine's quality gates read these (ota.services.gates).

Like metric samples, the rows point at their device without a database constraint: they age out
with retention, not by cascading deletes.
"""

from django.db import models

from devices.models import Device
from protocol.vocab import MODEL_ROLES

ROLE_CHOICES = [(r, r) for r in MODEL_ROLES]


class QualityFigures(models.Model):
    """What one model version did: counters summed over its windows, latencies frame-weighted."""

    device = models.ForeignKey(
        Device, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
    )
    model = models.CharField(max_length=128)
    version = models.CharField(max_length=64)
    role = models.CharField(max_length=8, choices=ROLE_CHOICES, default="active")
    seconds = models.FloatField()  # window length, summed
    frames = models.PositiveBigIntegerField()
    dropped_frames = models.PositiveBigIntegerField(default=0)
    latency_p50_ms = models.FloatField(null=True)
    latency_p95_ms = models.FloatField(null=True)
    detections = models.JSONField(default=dict)  # {label: count}
    score_mean = models.FloatField(null=True)
    crashes = models.PositiveIntegerField(default=0)
    cpu_pct = models.FloatField(null=True)
    temp_c = models.FloatField(null=True)
    matched = models.PositiveBigIntegerField(default=0)
    reference = models.PositiveBigIntegerField(default=0)
    extra = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True


class ModelQualitySample(QualityFigures):
    """One window as the device sent it, on the server clock."""

    id = models.BigAutoField(primary_key=True)
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["device", "end"], name="telemetry_quality_device"),
            models.Index(fields=["model", "version", "end"], name="telemetry_quality_version"),
        ]

    def __str__(self) -> str:
        return f"{self.device_id} {self.model}@{self.version} {self.role} {self.end:%Y-%m-%dT%H:%M:%S}"


class ModelQualityRollup(QualityFigures):
    """The windows that ended in one hour, per device, model version and role."""

    bucket = models.DateTimeField()
    windows = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device", "model", "version", "role", "bucket"], name="telemetry_quality_rollup_key"
            )
        ]
        indexes = [models.Index(fields=["bucket"], name="telemetry_qrollup_bucket")]

    def __str__(self) -> str:
        return f"{self.device_id} {self.model}@{self.version} {self.role} 1h@{self.bucket:%Y-%m-%dT%H}"
