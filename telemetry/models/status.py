"""Availability of each device, from its birth message, its last will and the silence sweep."""

from django.db import models

from devices.models import Device


class StatusReason(models.TextChoices):
    BIRTH = "birth", "Birth message"
    CONNECTION_LOST = "connection_lost", "Last will: connection lost"
    SHUTDOWN = "shutdown", "Clean shutdown"
    SILENT = "silent", "Nothing heard for longer than the threshold"
    RESUMED = "resumed", "Heard again after the silence sweep"
    SEEN = "seen", "Sending without a birth message on record"
    REPORTED = "reported", "Offline, reason given by the device"


class DeviceStatus(models.Model):
    """Current availability of one device (one row per device that has ever spoken).

    A table of its own rather than fields on Device: it changes on every connect and
    disconnect of 100k devices, and keeping that churn off the registry row keeps the
    device's audit snapshots, updated_at and admin edits free of it. Device keeps
    last_seen_at / agent_version / model_version, which the registry API shows.
    """

    device = models.OneToOneField(Device, on_delete=models.CASCADE, primary_key=True, related_name="status")
    online = models.BooleanField(default=False, db_index=True)
    # When `online` last changed, on the server's clock, and why.
    since = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)
    # Server receive time of the last up/status message (birth or will).
    status_at = models.DateTimeField(null=True, blank=True)
    hardware_model = models.CharField(max_length=128, blank=True)
    uptime_s = models.FloatField(null=True, blank=True)
    config_revision = models.PositiveIntegerField(null=True, blank=True)
    # What the device says is wrong while it runs on (up/status `faults`: a camera source it keeps
    # retrying, a model its detector refused); [] while offline or when all is well.
    faults = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name_plural = "device statuses"
        # The dashboard's "offline for long": offline rows, oldest change first, LIMIT 10 (bench/ui.py).
        indexes = [models.Index(fields=["online", "since"], name="telemetry_status_online_since")]

    def __str__(self) -> str:
        return f"{self.device_id}: {'online' if self.online else 'offline'}"
