"""Snapshots and clips uploaded on a grant (up/media request -> down/media grant -> up/media complete)."""

from django.db import models

from devices.models import Device
from telemetry.models.events import Event


class MediaKind(models.TextChoices):
    SNAPSHOT = "snapshot"
    CLIP = "clip"


class MediaState(models.TextChoices):
    GRANTED = "granted"  # URLs handed out, parts may be arriving
    VERIFIED = "verified"  # completed, size and sha256 as promised, attached to the event
    REFUSED = "refused"  # refused at request or at completion; `error` says why


class Media(models.Model):
    """One upload request of a device (by its request_id) and, once verified, the stored object."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="media")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, null=True, blank=True, related_name="media")
    request_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=MediaKind.choices)
    content_type = models.CharField(max_length=100)
    size = models.BigIntegerField(help_text="Bytes the device promised.")
    sha256 = models.CharField(max_length=64, help_text="sha256 the device promised.")
    state = models.CharField(max_length=16, choices=MediaState.choices, db_index=True)
    error = models.CharField(max_length=64, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    key = models.CharField(max_length=512, blank=True)
    upload_id = models.CharField(max_length=1024, blank=True)
    part_size = models.BigIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        constraints = [
            models.UniqueConstraint(fields=["device", "request_id"], name="telemetry_media_device_request")
        ]
        verbose_name_plural = "media"

    def __str__(self) -> str:
        return f"{self.kind} {self.request_id} of {self.device_id} ({self.state})"
