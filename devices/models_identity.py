"""Device identity: enrollment tokens and the certificates the fleet CA issued.

Imported at the end of devices/models.py so Django registers them with the app.
"""

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from devices.models import Device, DeviceGroup, HardwareModel, Site, Tag, name_validator


class EnrollmentToken(models.Model):
    """A limited-use, expiring credential a new camera presents once to get its certificate.

    The key is shown once at creation; only its sha256 is stored (keys are 256-bit
    random, so a fast hash is enough and the lookup stays one indexed query).
    The presets are applied to every device enrolled with it.
    """

    name = models.CharField(max_length=100, validators=[name_validator])
    prefix = models.CharField(max_length=12, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # When set, only devices reporting this hardware model may enroll with the token.
    hardware_model = models.ForeignKey(
        HardwareModel, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    groups = models.ManyToManyField(DeviceGroup, blank=True, related_name="+")
    tags = models.ManyToManyField(Tag, blank=True, related_name="+")
    max_uses = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    uses = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    audit_exclude = ("key_hash",)

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def status(self) -> str:
        """active, revoked, expired or used_up: what an operator needs to see in a list."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        if self.uses >= self.max_uses:
            return "used_up"
        return "active"


class DeviceCertificate(models.Model):
    """One certificate the fleet CA signed for a device; revoked rows feed the CRL and the embedded broker.

    The row outlives its device (SET_NULL): a deleted device's revoked certificate
    must stay on the CRL until it expires.
    """

    device = models.ForeignKey(
        Device, on_delete=models.SET_NULL, null=True, blank=True, related_name="certificates"
    )
    common_name = models.CharField(max_length=63, db_index=True)  # the device id it was issued to
    # X.509 serials are up to 20 octets (160 bits, 49 decimal digits): a decimal string
    # is portable across SQLite and PostgreSQL and sorts nothing that matters.
    serial = models.CharField(max_length=50, unique=True)
    fingerprint = models.CharField(max_length=64, unique=True)  # sha256 of the DER, hex
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    issued_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    reason = models.CharField(max_length=64, blank=True)
    # Set once the broker confirmed the revocation (CRL reloaded + kick); the CRL refresh retries the rest.
    broker_applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=["device", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.common_name} #{self.serial[:12]}"
