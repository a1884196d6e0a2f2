"""Reads of device identity: revoked serials for the CRL and the embedded broker, token and certificate lists."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet
from django.utils import timezone

from devices.models import Device
from devices.models_identity import DeviceCertificate, EnrollmentToken


def certificate_is_revoked(*, serial: int) -> bool:
    """The embedded broker's check on every CONNECT (one indexed query)."""
    return DeviceCertificate.objects.filter(serial=str(serial), revoked_at__isnull=False).exists()


def revoked_certificates(*, now: dt.datetime | None = None) -> list[tuple[int, dt.datetime]]:
    """(serial, revoked_at) of every revoked certificate not yet expired: the whole CRL.

    An expired certificate is refused by its dates, so it can leave the CRL and keep it small.
    """
    now = now or timezone.now()
    rows = DeviceCertificate.objects.filter(revoked_at__isnull=False, not_after__gt=now).values_list(
        "serial", "revoked_at"
    )
    return [(int(serial), revoked_at) for serial, revoked_at in rows.order_by("id")]


def certificates_unapplied() -> QuerySet[DeviceCertificate]:
    """Revoked certificates the broker has not confirmed yet (the CRL refresh retries them)."""
    return DeviceCertificate.objects.filter(revoked_at__isnull=False, broker_applied_at__isnull=True)


def device_certificates(*, device: Device) -> QuerySet[DeviceCertificate]:
    return DeviceCertificate.objects.filter(device=device).order_by("-id")


def enrollment_token_list() -> QuerySet[EnrollmentToken]:
    return EnrollmentToken.objects.select_related("site", "hardware_model").prefetch_related("groups", "tags")
