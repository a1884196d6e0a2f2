"""The device registry: sites, hardware models, groups, tags, devices and saved device filters."""

import zoneinfo

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from protocol.topics import DEVICE_ID_PATTERN

name_validator = RegexValidator(r"^[\w .:@+-]+$", "Use letters, digits, spaces and . : @ + - _ only.")
tag_validator = RegexValidator(r"^[a-z0-9][a-z0-9_.:-]{0,49}$", "Tags are lowercase: a-z 0-9 _ . : -")


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"'{value}' is not an IANA time zone (e.g. Europe/Berlin).")


class Site(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    address = models.CharField(max_length=300, blank=True)
    latitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-90), MaxValueValidator(90)]
    )
    longitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-180), MaxValueValidator(180)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class CpuArch(models.TextChoices):
    X86_64 = "x86_64"
    ARM64 = "arm64"
    ARMV7 = "armv7"


class Accelerator(models.TextChoices):
    NONE = "none"
    GPU = "gpu"
    NPU = "npu"
    TPU = "tpu"
    VPU = "vpu"


class HardwareModel(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    cpu_arch = models.CharField(max_length=16, choices=CpuArch.choices)
    accelerator = models.CharField(max_length=16, choices=Accelerator.choices, default=Accelerator.NONE)
    ram_mb = models.PositiveIntegerField(validators=[MinValueValidator(16), MaxValueValidator(1024 * 1024)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class DeviceGroup(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True, validators=[tag_validator])

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class DeviceState(models.TextChoices):
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    QUARANTINED = "quarantined"
    DECOMMISSIONED = "decommissioned"


class Device(models.Model):
    # Assigned by the server, never reused; it is the certificate CN and the MQTT topic segment.
    device_id = models.CharField(
        max_length=63, unique=True, validators=[RegexValidator(DEVICE_ID_PATTERN, "Not a valid device id.")]
    )
    name = models.CharField(max_length=100, db_index=True)
    serial = models.CharField(max_length=100, unique=True, null=True, blank=True)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, null=True, blank=True, related_name="devices")
    hardware_model = models.ForeignKey(
        HardwareModel, on_delete=models.PROTECT, null=True, blank=True, related_name="devices"
    )
    groups = models.ManyToManyField(DeviceGroup, blank=True, related_name="devices")
    tags = models.ManyToManyField(Tag, blank=True, related_name="devices")
    state = models.CharField(
        max_length=16, choices=DeviceState.choices, default=DeviceState.PROVISIONING, db_index=True
    )
    last_seen_at = models.DateTimeField(null=True, blank=True, db_index=True)
    agent_version = models.CharField(max_length=32, blank=True)
    model_version = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("id",)
        indexes = [models.Index(fields=["site", "id"]), models.Index(fields=["hardware_model", "id"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.device_id})"


class SavedFilter(models.Model):
    """A named device filter ("dynamic group"): its criteria are DeviceFilterSet query parameters."""

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    description = models.CharField(max_length=300, blank=True)
    criteria = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


from devices.models_identity import DeviceCertificate, EnrollmentToken  # noqa: E402, F401
