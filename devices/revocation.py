"""Revoking device certificates and making it effective at the broker.

The database is the source of truth (DeviceCertificate.revoked_at). After commit, the
broker is told: Mosquitto gets a new CRL (SIGHUP: no reconnect) and a dynsec kick
(ends the live session); the embedded broker checks DeviceCertificate on every CONNECT
and is asked to kick. A broker step that fails leaves `broker_applied_at` empty and
the CRL refresh (devices.tasks.crl_refresh, on Celery beat) retries it.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter

from devices.identity_selectors import certificates_unapplied, revoked_certificates
from devices.models import Device
from devices.models_identity import DeviceCertificate
from fleet import broker_runtime
from fleet.audit import Actor, audit_record

log = logging.getLogger(__name__)

BROKER_REVOCATIONS = Counter(
    "fleet_revocation_broker_total", "Revocations pushed to the broker, by result", ["result"]
)


def certificates_revoke(*, actor: Actor, device: Device, reason: str) -> int:
    """Revoke every live certificate of `device`; the broker hears of it after commit. Returns how many."""
    with transaction.atomic():
        rows = list(
            DeviceCertificate.objects.select_for_update()
            .filter(device=device, revoked_at__isnull=True)
            .values_list("pk", "serial")
        )
        if not rows:
            return 0
        now = timezone.now()
        DeviceCertificate.objects.filter(pk__in=[pk for pk, _ in rows]).update(
            revoked_at=now, reason=reason[:64]
        )
        audit_record(
            actor=actor,
            action="device.certificates_revoke",
            instance=device,
            after={"reason": reason, "serials": [serial for _, serial in rows]},
        )
        device_id = device.device_id
        transaction.on_commit(lambda: revocation_apply(device_id=device_id))
    return len(rows)


def device_revoke(*, actor: Actor, device: Device, reason: str = "") -> int:
    """POST /devices/{id}/revoke/: cut the device off now; it needs a new enrollment to come back.

    The state is left as it is: quarantine or decommission (which also revoke) say why.
    """
    return certificates_revoke(actor=actor, device=device, reason=reason or "revoked")


def revocation_apply(*, device_id: str) -> bool:
    """Push the revocations of `device_id` to the broker; True once confirmed. Never raises."""
    pending = list(certificates_unapplied().filter(common_name=device_id).values_list("pk", flat=True))
    try:
        if settings.MQTT_BROKER == "mosquitto":
            broker_runtime.revoker().revoke(device_id=device_id, revoked=revoked_certificates())
        else:
            broker = broker_runtime.embedded()
            if broker is None:
                # New connections are refused (the broker reads DeviceCertificate); the kick
                # waits for the process that runs the broker.
                log.warning("revocation of %s: no embedded broker in this process to kick", device_id)
                BROKER_REVOCATIONS.labels("no_broker").inc()
                return False
            broker.kick(device_id)
    except Exception:  # an after-commit hook cannot undo the commit: log, count, retry later
        log.exception("revocation of %s did not reach the broker; the CRL refresh retries", device_id)
        BROKER_REVOCATIONS.labels("error").inc()
        return False
    DeviceCertificate.objects.filter(pk__in=pending).update(broker_applied_at=timezone.now())
    BROKER_REVOCATIONS.labels("ok").inc()
    return True


def crl_refresh() -> int:
    """Publish a fresh CRL (Mosquitto) and retry unconfirmed revocations. Returns devices retried.

    Mosquitto refuses every client once the CRL's nextUpdate passes: run this well
    inside PKI_CRL_VALIDITY_HOURS (Celery beat, every PKI_CRL_REFRESH_S).
    """
    if settings.MQTT_BROKER == "mosquitto":
        broker_runtime.revoker().publish_crl(revoked_certificates())
    device_ids = sorted(set(certificates_unapplied().values_list("common_name", flat=True)))
    for device_id in device_ids:
        revocation_apply(device_id=device_id)
    return len(device_ids)


def devices_revoke(*, actor: Actor, device_ids: list[str], reason: str = "") -> int:
    """Revoke every live certificate of many devices at once (a bulk action); returns the devices cut off."""
    revoked = 0
    with transaction.atomic():
        for device in Device.objects.filter(device_id__in=device_ids).order_by("pk"):
            revoked += bool(device_revoke(actor=actor, device=device, reason=reason))
    return revoked
