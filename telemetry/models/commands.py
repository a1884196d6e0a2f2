"""Commands sent to one device on down/cmd and their state, driven by up/ack and expiry."""

from django.conf import settings
from django.db import models

from devices.models import Device
from protocol.vocab import COMMAND_NAMES


class CommandState(models.TextChoices):
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


TERMINAL_STATES = frozenset({CommandState.SUCCEEDED, CommandState.FAILED, CommandState.EXPIRED})


class Command(models.Model):
    command_id = models.CharField(max_length=64, unique=True)  # also the down/cmd message id
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="commands")
    name = models.CharField(max_length=32, choices=[(n, n) for n in COMMAND_NAMES])
    args = models.JSONField(default=dict, blank=True)
    state = models.CharField(
        max_length=16, choices=CommandState.choices, default=CommandState.SENT, db_index=True
    )
    detail = models.CharField(max_length=2000, blank=True)
    result = models.JSONField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=["device", "id"], name="telemetry_command_device")]

    def __str__(self) -> str:
        return f"{self.name} {self.command_id} -> {self.device_id} ({self.state})"
