"""Device identity services: enrollment tokens, enrollment (the one HTTPS call a camera makes), renewal.

A device makes its key pair and CSR itself; the server checks the CSR (self-signature,
key type and size), names the device, signs a certificate with CN = device id and
records it. Every refusal is a security event: audited with the source and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter

from devices.models import Device, DeviceGroup, DeviceState, HardwareModel, Site
from devices.models_identity import DeviceCertificate, EnrollmentToken
from fleet import broker_runtime, pki
from fleet.audit import Actor, audit_record, snapshot
from fleet.errors import FleetError
from fleet.secret_keys import key_hash, key_new, key_revoke

TOKEN_PREFIX = "fet_"  # "fleet enrollment token": recognisable in logs and secret scanners
SERIAL_RE = re.compile(r"[\x21-\x7e]{1,100}")  # printable ASCII, no spaces
# A device may hold this many unexpired, unrevoked certificates (renewals overlap; a lost
# down/cert makes the device ask again). Beyond it, renewals are refused.
MAX_LIVE_CERTIFICATES = 5

ENROLLMENTS = Counter("fleet_enrollments_total", "Enrollment attempts by result", ["result"])
RENEWALS = Counter("fleet_certificate_renewals_total", "up/cert renewals by result", ["result"])


class EnrollmentError(FleetError):
    """A refused enrollment, token or certificate operation; `code` is the reason."""


# -- enrollment tokens --------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedEnrollmentToken:
    token: EnrollmentToken
    key: str  # shown once, never stored


@transaction.atomic
def enrollment_token_create(
    *,
    actor: Actor,
    name: str,
    max_uses: int = 1,
    expires_in_hours: int | None = None,
    site: Site | None = None,
    hardware_model: HardwareModel | None = None,
    groups: list[DeviceGroup] | tuple = (),
    tags: list[str] | tuple = (),
) -> IssuedEnrollmentToken:
    """A new token; its presets (site, hardware model, groups, tags) go to every device enrolled with it."""
    from devices.services import tags_resolve

    hours = settings.ENROLLMENT_TOKEN_DEFAULT_HOURS if expires_in_hours is None else expires_in_hours
    if hours <= 0:
        raise EnrollmentError("validation_error", "expires_in_hours must be positive.")
    if max_uses < 1:
        raise EnrollmentError("validation_error", "max_uses must be at least 1.")
    new = key_new(TOKEN_PREFIX)
    token = EnrollmentToken(
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        site=site,
        hardware_model=hardware_model,
        max_uses=max_uses,
        expires_at=timezone.now() + timedelta(hours=hours),
    )
    token.full_clean()
    token.save()
    token.groups.set(groups)
    token.tags.set(tags_resolve(names=tags))
    audit_record(actor=actor, action="enrollment_token.create", instance=token, after=snapshot(token))
    return IssuedEnrollmentToken(token=token, key=new.key)


@transaction.atomic
def enrollment_token_revoke(*, actor: Actor, token: EnrollmentToken) -> EnrollmentToken:
    """No device can enroll with it afterwards; devices already enrolled keep their certificates."""
    return key_revoke(actor=actor, record=token, action="enrollment_token.revoke")


def _token_for_use(key: str) -> EnrollmentToken:
    """The token for `key`, row-locked so concurrent enrollments cannot exceed max_uses."""
    token = (
        EnrollmentToken.objects.select_for_update(of=("self",))
        .filter(key_hash=key_hash(key or ""))
        .select_related("site", "hardware_model")
        .first()
    )
    if token is None:
        raise EnrollmentError("token_invalid", "The enrollment token is not valid.", status=401)
    if token.revoked_at is not None:
        raise EnrollmentError("token_revoked", "The enrollment token has been revoked.", status=403)
    if token.expires_at <= timezone.now():
        raise EnrollmentError("token_expired", "The enrollment token has expired.", status=403)
    if token.uses >= token.max_uses:
        raise EnrollmentError("token_used_up", "The enrollment token has no uses left.", status=403)
    return token


# -- certificates ----------------------------------------------------------------------------------


def csr_check(csr_pem: str) -> x509.CertificateSigningRequest:
    """fleet.pki.load_csr with its reasons as EnrollmentError (400; 413 for an oversize CSR)."""
    try:
        return pki.load_csr(csr_pem, max_bytes=settings.ENROLL_CSR_MAX_BYTES)
    except pki.PKIError as exc:
        status = 413 if exc.reason == "csr_too_large" else 400
        raise EnrollmentError(
            exc.reason, f"Certificate request refused: {exc.detail or exc.reason}.", status=status
        ) from exc


def _ca() -> tuple[pki.PrivateKey, x509.Certificate]:
    try:
        return broker_runtime.signing_ca()
    except pki.PKIError as exc:
        raise EnrollmentError("pki_unavailable", "The device CA is not available.", status=503) from exc


def certificate_issue(
    *, device: Device, csr: x509.CertificateSigningRequest
) -> tuple[DeviceCertificate, str]:
    """Sign a checked CSR for `device` (CN = device id, DEVICE_CERT_LIFETIME_HOURS) and record it."""
    ca_key, ca_cert = _ca()
    cert = pki.sign_device_csr(
        ca_key=ca_key,
        ca_cert=ca_cert,
        csr=csr,
        device_id=device.device_id,
        valid_seconds=settings.DEVICE_CERT_LIFETIME_HOURS * 3600,
    )
    record = DeviceCertificate.objects.create(
        device=device,
        common_name=device.device_id,
        serial=str(cert.serial_number),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )
    return record, pki.cert_pem(cert).decode()


# -- enrollment --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollResult:
    device: Device
    certificate: DeviceCertificate
    certificate_pem: str
    ca_pem: str
    reenrolled: bool


def enrollment_refused(
    *, code: str, serial: str = "", source: str = "", detail: str = "", token_id: int | None = None
) -> None:
    """Record a refused enrollment: it is a security event (audited as from the device, and counted)."""
    ENROLLMENTS.labels(code).inc()
    audit_record(
        actor=Actor.device(f"enroll:{serial[:100]}" if serial else "enroll"),
        action="device.enroll_refused",
        object_type="enrollment_token",
        object_id=str(token_id or ""),
        after={"reason": code, "detail": detail[:300], "serial": serial[:100], "source": source},
    )


def device_enroll(
    *,
    token: str,
    csr_pem: str,
    serial: str,
    hardware_model: str,
    agent_version: str = "",
    source: str = "",
) -> EnrollResult:
    """The one HTTPS call a new camera makes. Raises EnrollmentError with a reason (audited either way).

    A known serial re-enrolls: a fresh certificate for the same device, its older
    certificates revoked at the broker after commit.
    """
    seen: dict[str, int] = {}
    try:
        with transaction.atomic():
            result = _enroll(
                key=token,
                csr_pem=csr_pem,
                serial=serial,
                hardware_model=hardware_model,
                agent_version=agent_version,
                source=source,
                seen=seen,
            )
    except EnrollmentError as exc:
        enrollment_refused(
            code=exc.code, serial=serial, source=source, detail=exc.message, token_id=seen.get("token")
        )
        raise
    ENROLLMENTS.labels("reenrolled" if result.reenrolled else "enrolled").inc()
    return result


def _enroll(
    *, key: str, csr_pem: str, serial: str, hardware_model: str, agent_version: str, source: str, seen: dict
) -> EnrollResult:
    from devices.revocation import certificates_revoke
    from devices.services import device_create, device_transition
    from fleet.services import model_update

    token = _token_for_use(key)
    seen["token"] = token.pk
    csr = csr_check(csr_pem)
    if not SERIAL_RE.fullmatch(serial or ""):
        raise EnrollmentError("invalid_serial", "The serial must be 1-100 printable characters, no spaces.")
    model = HardwareModel.objects.filter(name=hardware_model).first()
    if model is None:
        raise EnrollmentError("unknown_hardware_model", f"Unknown hardware model '{hardware_model[:100]}'.")
    if token.hardware_model_id is not None and token.hardware_model_id != model.pk:
        raise EnrollmentError(
            "hardware_model_not_allowed",
            f"This token is for '{token.hardware_model.name}' devices only.",
            status=403,
        )

    device = Device.objects.select_for_update().filter(serial=serial).first()
    actor = Actor.device(device.device_id if device else f"enroll:{serial}")
    reenrolled = device is not None
    if device is None:
        from devices.services import new_device_id

        device = device_create(
            actor=actor,
            data={
                "device_id": new_device_id(),
                "name": serial,
                "serial": serial,
                "site": token.site,
                "hardware_model": model,
                "groups": list(token.groups.all()),
                "tags": [t.name for t in token.tags.all()],
                "agent_version": agent_version,
            },
        )
    else:
        if device.state in (DeviceState.DECOMMISSIONED, DeviceState.QUARANTINED):
            raise EnrollmentError(
                f"device_{device.state}",
                f"Device {device.device_id} is {device.state}; an operator must act before it can enroll.",
                status=409,
            )
        # A site-bound token cannot take over a device of another site by its serial.
        if token.site_id is not None and device.site_id not in (None, token.site_id):
            raise EnrollmentError(
                "token_site_mismatch", "This token may not enroll devices of another site.", status=403
            )
        certificates_revoke(actor=actor, device=device, reason="superseded")
        device = model_update(
            instance=device, actor=actor, data={"agent_version": agent_version, "hardware_model": model}
        )
    if device.state == DeviceState.PROVISIONING:
        device = device_transition(actor=actor, device=device, state=DeviceState.ACTIVE, reason="enrolled")

    record, cert_pem = certificate_issue(device=device, csr=csr)
    token.uses += 1
    token.last_used_at = timezone.now()
    token.save(update_fields=["uses", "last_used_at"])
    audit_record(
        actor=actor,
        action="device.reenroll" if reenrolled else "device.enroll",
        instance=device,
        after={
            "token": token.pk,
            "token_prefix": token.prefix,
            "serial": serial,
            "certificate_serial": record.serial,
            "not_after": record.not_after.isoformat(),
            "source": source,
        },
    )
    return EnrollResult(
        device=device,
        certificate=record,
        certificate_pem=cert_pem,
        ca_pem=broker_runtime.ca_pem(),
        reenrolled=reenrolled,
    )


# -- renewal over MQTT (up/cert) -----------------------------------------------------------------


def _csr_common_name(csr: x509.CertificateSigningRequest) -> str | None:
    names = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def certificate_renew(*, device_id: str, csr_pem: str) -> tuple[DeviceCertificate, str]:
    """A new certificate for a connected device's own CSR. The old one stays valid until it expires.

    Raises EnrollmentError: `revoked` (device not active, or no live certificate), CSR
    reasons, `csr_subject_mismatch`, `renewal_limit`. Refusals are audited.
    """
    actor = Actor.device(device_id)
    try:
        with transaction.atomic():
            device = Device.objects.select_for_update().filter(device_id=device_id).first()
            if device is None or device.state != DeviceState.ACTIVE:
                raise EnrollmentError("revoked", "The device is not active.", status=403)
            now = timezone.now()
            live = DeviceCertificate.objects.filter(device=device, revoked_at__isnull=True, not_after__gt=now)
            live_count = live.count()
            if live_count == 0:
                raise EnrollmentError("revoked", "The device has no valid certificate.", status=403)
            if live_count >= MAX_LIVE_CERTIFICATES:
                raise EnrollmentError(
                    "renewal_limit", f"The device holds {live_count} valid certificates already.", status=429
                )
            csr = csr_check(csr_pem)
            common_name = _csr_common_name(csr)
            if common_name is not None and common_name != device_id:
                raise EnrollmentError(
                    "csr_subject_mismatch", f"The CSR names {common_name[:64]!r}, not {device_id!r}."
                )
            record, cert_pem = certificate_issue(device=device, csr=csr)
            audit_record(
                actor=actor,
                action="device.certificate_renew",
                instance=device,
                after={"certificate_serial": record.serial, "not_after": record.not_after.isoformat()},
            )
    except EnrollmentError as exc:
        RENEWALS.labels(exc.code).inc()
        audit_record(
            actor=actor,
            action="device.certificate_renew_refused",
            object_type="device",
            object_id=device_id,
            after={"reason": exc.code, "detail": exc.message[:300]},
        )
        raise
    RENEWALS.labels("issued").inc()
    return record, cert_pem
