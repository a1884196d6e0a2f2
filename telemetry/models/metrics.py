"""Health metrics: raw samples from up/telemetry and their 1-minute / 1-hour rollups.

On PostgreSQL `telemetry_metricsample` is range-partitioned by day on `ts`
(created by migration 0001 with raw SQL; partitions are made ahead by
`telemetry.metrics.partitions`), so retention drops whole partitions. On SQLite
it is a plain table and retention deletes rows. Django sees one model either way.

Samples and rollups point at their device without a database constraint: a
device's millions of samples must not be cascaded row by row when it is deleted
(only never-live or decommissioned devices can be), they age out with retention.
"""

from django.db import models

from devices.models import Device

# The numeric metrics of a sample, in API and rollup order. One list, used by the
# ingest, the rollups, the API's `metric` parameter and the admin.
NUMERIC_METRICS: tuple[str, ...] = ("cpu_pct", "mem_pct", "temp_c", "fps", "inference_ms", "disk_free_mb")


class Resolution(models.TextChoices):
    RAW = "raw"
    MINUTE = "1m"
    HOUR = "1h"


class MetricSample(models.Model):
    id = models.BigAutoField(primary_key=True)
    device = models.ForeignKey(
        Device, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
    )
    # When the sample was taken, corrected onto the server clock when the device clock is off.
    ts = models.DateTimeField()
    cpu_pct = models.FloatField()
    mem_pct = models.FloatField()
    temp_c = models.FloatField(null=True)
    fps = models.FloatField(null=True)
    inference_ms = models.FloatField(null=True)
    disk_free_mb = models.FloatField(null=True)
    link = models.CharField(max_length=16)
    queue_depth = models.JSONField(default=dict)  # {uplink class: items waiting}
    bytes_sent = models.JSONField(default=dict)  # {uplink class: bytes since the previous sample}

    class Meta:
        indexes = [models.Index(fields=["device", "ts"], name="telemetry_sample_device_ts")]

    def __str__(self) -> str:
        return f"{self.device_id}@{self.ts:%Y-%m-%dT%H:%M:%S}"


class MetricRollup(models.Model):
    """Average and maximum of each metric per device over one bucket (a minute or an hour)."""

    device = models.ForeignKey(
        Device, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
    )
    resolution = models.CharField(max_length=2, choices=[(Resolution.MINUTE, "1m"), (Resolution.HOUR, "1h")])
    bucket = models.DateTimeField()  # start of the minute / hour
    samples = models.PositiveIntegerField()
    cpu_pct_avg = models.FloatField(null=True)
    cpu_pct_max = models.FloatField(null=True)
    mem_pct_avg = models.FloatField(null=True)
    mem_pct_max = models.FloatField(null=True)
    temp_c_avg = models.FloatField(null=True)
    temp_c_max = models.FloatField(null=True)
    fps_avg = models.FloatField(null=True)
    fps_max = models.FloatField(null=True)
    inference_ms_avg = models.FloatField(null=True)
    inference_ms_max = models.FloatField(null=True)
    disk_free_mb_avg = models.FloatField(null=True)
    disk_free_mb_max = models.FloatField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device", "resolution", "bucket"], name="telemetry_rollup_device_bucket"
            )
        ]
        indexes = [models.Index(fields=["resolution", "bucket"], name="telemetry_rollup_bucket")]

    def __str__(self) -> str:
        return f"{self.device_id} {self.resolution}@{self.bucket:%Y-%m-%dT%H:%M}"
