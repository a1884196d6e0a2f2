"""Detection events from up/events, alert rules evaluated on them, and the alerts they raise."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from devices.models import Device, DeviceGroup, Site, name_validator


class Event(models.Model):
    """One detection, upserted by (device, event_id): sent when it starts and again when it ends."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="events")
    event_id = models.CharField(max_length=64)  # the device's id for it, unique per device
    camera = models.CharField(max_length=128)
    label = models.CharField(max_length=128)
    score = models.FloatField(validators=[MinValueValidator(0), MaxValueValidator(1)])
    bbox = models.JSONField(help_text="[x, y, w, h], normalised 0..1, origin top-left.")
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)
    zone = models.CharField(max_length=128, blank=True)
    # Media the device announced ([{"kind", "sha256"}]); uploaded objects are Media rows.
    media_refs = models.JSONField(default=list, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when an operator has looked at it (events review); None = still to review.
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ("-id",)
        constraints = [
            models.UniqueConstraint(fields=["device", "event_id"], name="telemetry_event_device_event_id")
        ]
        indexes = [
            models.Index(fields=["device", "start"], name="telemetry_event_device_start"),
            models.Index(fields=["label", "start"], name="telemetry_event_label_start"),
            models.Index(fields=["start"], name="telemetry_event_start"),
        ]

    def __str__(self) -> str:
        return f"{self.label} {self.score:.2f} on {self.device_id}/{self.event_id}"


class AlertRule(models.Model):
    """Which events raise an alert: labels, minimum score, scope (sites / groups), quiet hours."""

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    labels = models.JSONField(default=list, blank=True, help_text="Labels that match; empty matches any.")
    min_score = models.FloatField(default=0.5, validators=[MinValueValidator(0), MaxValueValidator(1)])
    # Scope: a device matches if its site is listed or it is in a listed group; both empty = every device.
    sites = models.ManyToManyField(Site, blank=True, related_name="alert_rules")
    groups = models.ManyToManyField(DeviceGroup, blank=True, related_name="alert_rules")
    # In the device's site time zone (UTC without a site); may wrap midnight. Inside it the rule is silent.
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    audit_exclude = ("webhook_secret",)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValidationError({"quiet_end": "Quiet hours need both a start and an end."})
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise ValidationError({"quiet_end": "Quiet hours must not start and end at the same time."})
        if not isinstance(self.labels, list) or not all(
            isinstance(v, str) and 0 < len(v) <= 128 for v in self.labels
        ):
            raise ValidationError({"labels": "A list of label names."})
        if self.webhook_url and not self.webhook_secret:
            raise ValidationError({"webhook_secret": "A webhook needs a secret to sign its requests."})


class WebhookState(models.TextChoices):
    NONE = "none"  # the rule has no webhook
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last retry


class Alert(models.Model):
    """An event that matched a rule: shown in the app until acknowledged, and sent to the rule's webhook."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="alerts")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="alerts")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    webhook_state = models.CharField(max_length=16, choices=WebhookState.choices, default=WebhookState.NONE)
    webhook_attempts = models.PositiveIntegerField(default=0)
    webhook_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ("-id",)
        # An event that is re-sent (its end, its media) never raises the same alert twice.
        constraints = [models.UniqueConstraint(fields=["rule", "event"], name="telemetry_alert_rule_event")]

    def __str__(self) -> str:
        return f"{self.rule} on {self.event}"
