"""Bandwidth policies (fleet default, per group, per device), each device's desired config, data usage."""

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from devices.models import Device, DeviceGroup, name_validator
from protocol.vocab import UPLINK_CLASSES

CLASS_CHOICES = [(c, c) for c in UPLINK_CLASSES]
MIB = 1024 * 1024


def _default_classes() -> list[str]:
    return list(UPLINK_CLASSES)


class BandwidthPolicy(models.Model):
    """How a device may use its uplink. Scope: one device, one group, or (neither) the fleet default.

    Precedence (telemetry.policies.resolve): the device's own policy, else the policy of one
    of its groups (highest `priority`, then lowest id), else the fleet default, else
    protocol defaults.
    """

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    device = models.OneToOneField(
        Device, on_delete=models.CASCADE, null=True, blank=True, related_name="bandwidth_policy"
    )
    group = models.OneToOneField(
        DeviceGroup, on_delete=models.CASCADE, null=True, blank=True, related_name="bandwidth_policy"
    )
    priority = models.IntegerField(default=0, help_text="Among group policies of one device, highest wins.")
    max_kbps = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    daily_budget_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="MiB per local day; empty = unlimited."
    )
    classes_allowed = models.JSONField(default=_default_classes)
    class_priority = models.JSONField(default=list, blank=True)
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    metered = models.BooleanField(default=False)
    # Upload limits for media grants (bytes).
    max_snapshot_bytes = models.PositiveIntegerField(default=5 * MIB)
    max_clip_bytes = models.BigIntegerField(default=200 * MIB, validators=[MinValueValidator(1)])
    # Detection settings sent in down/config (protocol DetectionSettings fields); missing keys keep defaults.
    detection = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.CheckConstraint(
                condition=Q(device__isnull=True) | Q(group__isnull=True), name="telemetry_policy_one_scope"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def scope(self) -> str:
        return "device" if self.device_id else "group" if self.group_id else "fleet"

    def clean(self) -> None:
        if not self.device_id and not self.group_id:
            others = BandwidthPolicy.objects.filter(device__isnull=True, group__isnull=True).exclude(
                pk=self.pk
            )
            if others.exists():
                raise ValidationError("There is already a fleet default policy (no device, no group).")
        if self.device_id and self.group_id:
            raise ValidationError({"group": "A policy applies to a device or a group, not both."})
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValidationError({"quiet_end": "Quiet hours need both a start and an end."})
        for field in ("classes_allowed", "class_priority"):
            values = getattr(self, field)
            if not isinstance(values, list) or any(v not in UPLINK_CLASSES for v in values):
                raise ValidationError({field: f"A list of uplink classes: {', '.join(UPLINK_CLASSES)}."})
            if len(set(values)) != len(values):
                raise ValidationError({field: "Duplicates."})


class DeviceConfigState(models.Model):
    """The desired config last published to a device on down/config (retained), and its revision."""

    device = models.OneToOneField(
        Device, on_delete=models.CASCADE, primary_key=True, related_name="config_state"
    )
    revision = models.PositiveIntegerField(default=0)
    config = models.JSONField(default=dict)
    policy = models.ForeignKey(
        BandwidthPolicy, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.device_id} config r{self.revision}"


class DataUsage(models.Model):
    """Verified upload bytes per device, local day (site time zone) and uplink class."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="data_usage")
    day = models.DateField()
    uplink_class = models.CharField(max_length=16, choices=CLASS_CHOICES)
    bytes = models.BigIntegerField(default=0)

    class Meta:
        ordering = ("-day", "device_id", "uplink_class")
        constraints = [
            models.UniqueConstraint(fields=["device", "day", "uplink_class"], name="telemetry_usage_unique")
        ]

    def __str__(self) -> str:
        return f"{self.device_id} {self.day} {self.uplink_class}: {self.bytes}"
