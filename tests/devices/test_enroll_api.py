# ruff: noqa: F811 - pytest fixtures imported from tests/devices/test_identity_fixtures.py
"""POST /api/v1/enroll/ and the enrollment token API: the happy path, re-enrollment and every refusal."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import Device, DeviceState
from devices.models_identity import DeviceCertificate, EnrollmentToken
from fleet import pki
from fleet.models import AuditEntry
from protocol.download import origin
from tests.api_base import assert_error_body
from tests.devices.test_identity_fixtures import (  # noqa: F401 - fixtures
    ENROLL_URL,
    enroll,
    enroll_body,
    hardware_model,
    identity_pki,
    make_token,
    post_enroll,
    unthrottled,
)
from tests.factories import DeviceFactory, DeviceGroupFactory, HardwareModelFactory, SiteFactory, TagFactory

pytestmark = pytest.mark.django_db


# -- tokens ----------------------------------------------------------------------------------------


def test_admin_creates_a_token_whose_key_is_shown_once(admin_client_api):
    site, group = SiteFactory(), DeviceGroupFactory()
    response = admin_client_api.post(
        "/api/v1/enrollment-tokens/",
        {
            "name": "Berlin batch",
            "max_uses": 5,
            "expires_in_hours": 2,
            "site": site.pk,
            "groups": [group.pk],
            "tags": ["lobby"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["key"].startswith("fet_") and created["prefix"] == created["key"][:12]
    assert created["status"] == "active" and created["max_uses"] == 5 and created["tags"] == ["lobby"]
    token = EnrollmentToken.objects.get(pk=created["id"])
    assert created["key"] not in (token.key_hash, token.prefix)  # only the hash is stored
    detail = admin_client_api.get(f"/api/v1/enrollment-tokens/{token.pk}/").json()
    listed = admin_client_api.get("/api/v1/enrollment-tokens/").json()["results"]
    assert "key" not in detail and all("key" not in row for row in listed)
    entry = AuditEntry.objects.get(action="enrollment_token.create", object_id=str(token.pk))
    assert "key_hash" not in entry.after


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_see_or_create_tokens(api_client_for, role):
    client = api_client_for(role)
    assert_error_body(client.get("/api/v1/enrollment-tokens/"), 403)
    assert_error_body(client.post("/api/v1/enrollment-tokens/", {"name": "x"}, format="json"), 403)


def test_revoked_token_is_refused_and_the_revocation_audited(admin_client_api, enroll, make_token):
    token, key = make_token(max_uses=3)
    assert admin_client_api.delete(f"/api/v1/enrollment-tokens/{token.pk}/").status_code == 204
    token.refresh_from_db()
    assert token.status == "revoked"
    assert AuditEntry.objects.filter(action="enrollment_token.revoke", object_id=str(token.pk)).exists()
    assert_error_body(post_enroll(APIClient(), enroll_body(key)), 403, "token_revoked")


# -- enrollment ---------------------------------------------------------------------------------------


def test_enrollment_makes_an_active_device_with_the_token_presets_and_a_certificate(
    identity_pki, unthrottled, hardware_model, make_token, settings
):
    settings.DEVICE_CERT_LIFETIME_HOURS = 2
    site, group, tag = SiteFactory(), DeviceGroupFactory(), TagFactory(name="lobby")
    token, key = make_token(max_uses=2, site=site, groups=[group], tags=[tag.name])
    # The CSR asks for a server identity; the server ignores the subject and names the device.
    body = enroll_body(key, serial="SN-0001")
    device_key = body["_key"]
    body["csr_pem"] = pki.create_csr(key=device_key, common_name=pki.INGEST_IDENTITY).decode()

    response = post_enroll(APIClient(), body)

    assert response.status_code == 201, response.content
    data = response.json()
    assert set(data) == {"device_id", "certificate_pem", "ca_pem", "mqtt", "api_url", "download_origins"}
    assert data["mqtt"] == {"host": settings.MQTT_DEVICE_HOST, "port": settings.MQTT_DEVICE_PORT, "tls": True}
    assert data["api_url"] == settings.PUBLIC_URL
    # Local storage: artifacts come from the server itself, and from nowhere else.
    assert data["download_origins"] == [origin(settings.PUBLIC_URL)]
    device = Device.objects.get(device_id=data["device_id"])
    assert device.state == DeviceState.ACTIVE and device.serial == "SN-0001"
    assert device.site == site and list(device.groups.all()) == [group] and list(device.tags.all()) == [tag]
    assert device.hardware_model == hardware_model and device.agent_version == "1.0.0"

    cert = x509.load_pem_x509_certificate(data["certificate_pem"].encode())
    ca = x509.load_pem_x509_certificate(data["ca_pem"].encode())
    cert.verify_directly_issued_by(ca)
    assert ca == identity_pki.ca_cert
    assert cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == device.device_id
    assert cert.public_key() == device_key.public_key()
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(hours=2) + pki.CLOCK_SKEW
    record = DeviceCertificate.objects.get(device=device)
    assert record.serial == str(cert.serial_number) and record.revoked_at is None
    assert record.fingerprint == cert.fingerprint(hashes.SHA256()).hex()

    token.refresh_from_db()
    assert token.uses == 1
    entry = AuditEntry.objects.get(action="device.enroll", object_id=str(device.pk))
    assert entry.source == "device" and entry.after["certificate_serial"] == record.serial


def test_reenrolling_a_known_serial_gives_the_same_device_a_fresh_certificate_and_revokes_the_old(
    enroll, make_token, django_capture_on_commit_callbacks, monkeypatch
):
    pushed: list[str] = []
    monkeypatch.setattr("devices.revocation.revocation_apply", lambda *, device_id: pushed.append(device_id))
    _, key = make_token(max_uses=2)
    first = enroll(key, serial="SN-again")
    with django_capture_on_commit_callbacks(execute=True):
        second = enroll(key, serial="SN-again")

    assert second.device_id == first.device_id and second.serial != first.serial
    old = DeviceCertificate.objects.get(serial=str(first.serial))
    new = DeviceCertificate.objects.get(serial=str(second.serial))
    assert old.revoked_at is not None and old.reason == "superseded" and new.revoked_at is None
    assert pushed == [first.device_id]  # the broker hears of it after commit
    assert Device.objects.filter(serial="SN-again").count() == 1
    assert AuditEntry.objects.filter(action="device.reenroll").count() == 1


def test_a_device_registered_by_an_operator_is_claimed_by_its_serial(enroll, make_token):
    device = DeviceFactory(serial="SN-pre", state=DeviceState.PROVISIONING)
    _, key = make_token()
    enrolled = enroll(key, serial="SN-pre")
    device.refresh_from_db()
    assert enrolled.device_id == device.device_id and device.state == DeviceState.ACTIVE


# -- refusals -------------------------------------------------------------------------------------------


def _rsa_1024_csr() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return pki.create_csr(key=key, common_name="weak").decode()


def _bad_signature_csr() -> str:
    csr = x509.load_pem_x509_csr(pki.create_csr(key=pki.generate_key(), common_name="x"))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    import base64

    b64 = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n"


def _other_key_type_csr() -> str:
    key = ec.generate_private_key(ec.SECP521R1())
    return pki.create_csr(key=key, common_name="x").decode()


def _expired(token):
    EnrollmentToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))


def _used_up(token):
    EnrollmentToken.objects.filter(pk=token.pk).update(uses=token.max_uses)


def _revoked(token):
    EnrollmentToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())


REFUSALS = [
    # id, change to the token, change to the body, status, code
    ("unknown_token", None, {"token": "fet_not-a-token"}, 401, "token_invalid"),
    ("expired_token", _expired, {}, 403, "token_expired"),
    ("used_up_token", _used_up, {}, 403, "token_used_up"),
    ("revoked_token", _revoked, {}, 403, "token_revoked"),
    ("malformed_csr", None, {"csr_pem": "hello"}, 400, "csr_malformed"),
    (
        "garbage_pem_csr",
        None,
        {"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"},
        400,
        "csr_malformed",
    ),
    ("weak_rsa_csr", None, {"csr_pem": _rsa_1024_csr}, 400, "key_type_not_allowed"),
    ("p521_csr", None, {"csr_pem": _other_key_type_csr}, 400, "key_type_not_allowed"),
    ("bad_signature_csr", None, {"csr_pem": _bad_signature_csr}, 400, "csr_bad_signature"),
    ("unknown_hardware_model", None, {"hardware_model": "toaster-9000"}, 400, "unknown_hardware_model"),
    ("bad_serial", None, {"serial": "has spaces in it"}, 400, "invalid_serial"),
    ("missing_field", None, {"serial": None}, 400, "validation_error"),
    ("unknown_field", None, {"device_id": "cam-mine"}, 400, "validation_error"),
]


@pytest.mark.parametrize(
    ("change_token", "change_body", "status", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refused_enrollment_has_a_reason_is_audited_and_changes_nothing(
    identity_pki, unthrottled, hardware_model, make_token, change_token, change_body, status, code
):
    token, key = make_token(max_uses=1)
    if change_token:
        change_token(token)
    uses_before = EnrollmentToken.objects.get(pk=token.pk).uses
    body = enroll_body(key)
    for name, value in change_body.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value() if callable(value) else value

    response = post_enroll(APIClient(), body)

    error = assert_error_body(response, status, code)
    assert error["message"]
    assert not Device.objects.exists() and not DeviceCertificate.objects.exists()
    assert EnrollmentToken.objects.get(pk=token.pk).uses == uses_before
    entry = AuditEntry.objects.get(action="device.enroll_refused")
    assert entry.source == "device" and entry.after["reason"] == code and entry.after["source"] == "127.0.0.1"


def test_a_token_bound_to_a_hardware_model_refuses_other_models(
    identity_pki, unthrottled, hardware_model, make_token
):
    other = HardwareModelFactory(name="cam-other")
    _, key = make_token(hardware_model=other)
    assert_error_body(post_enroll(APIClient(), enroll_body(key)), 403, "hardware_model_not_allowed")


@pytest.mark.parametrize("state", [DeviceState.DECOMMISSIONED, DeviceState.QUARANTINED])
def test_a_decommissioned_or_quarantined_device_cannot_reenroll(
    identity_pki, unthrottled, hardware_model, make_token, state
):
    DeviceFactory(serial="SN-gone", state=state)
    _, key = make_token()
    assert_error_body(post_enroll(APIClient(), enroll_body(key, serial="SN-gone")), 409, f"device_{state}")


def test_a_site_bound_token_cannot_take_over_a_device_of_another_site(
    identity_pki, unthrottled, hardware_model, make_token
):
    DeviceFactory(serial="SN-elsewhere", site=SiteFactory())
    _, key = make_token(site=SiteFactory())
    assert_error_body(
        post_enroll(APIClient(), enroll_body(key, serial="SN-elsewhere")), 403, "token_site_mismatch"
    )


def test_oversize_body_is_413_and_audited(identity_pki, unthrottled, hardware_model, make_token, settings):
    _, key = make_token()
    body = enroll_body(key, agent_version="1" * 30)
    body["csr_pem"] = body["csr_pem"] + " " * (settings.ENROLL_MAX_BODY_BYTES + 1)
    assert_error_body(post_enroll(APIClient(), body), 413, "too_large")
    assert AuditEntry.objects.get(action="device.enroll_refused").after["reason"] == "too_large"


def test_a_body_that_is_not_json_is_400_and_audited(identity_pki, unthrottled):
    response = APIClient().post(ENROLL_URL, b"{not json", content_type="application/json")
    assert_error_body(response, 400, "parse_error")
    assert AuditEntry.objects.get(action="device.enroll_refused").after["reason"] == "parse_error"


def test_without_a_ca_enrollment_is_503_not_500(unthrottled, hardware_model, make_token, settings, tmp_path):
    from fleet import broker_runtime

    settings.PKI_DIR = tmp_path / "empty"
    broker_runtime.reset()
    _, key = make_token()
    assert_error_body(post_enroll(APIClient(), enroll_body(key)), 503, "pki_unavailable")


def test_enrollment_is_rate_limited(identity_pki, hardware_model, make_token, throttle_rates):
    throttle_rates(enroll="3/min")
    client = APIClient()
    codes = [post_enroll(client, enroll_body("fet_wrong")).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert_error_body(post_enroll(client, enroll_body("fet_wrong")), 429, "throttled")


# -- concurrency -------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_max_uses_holds_under_concurrent_enrollments(identity_pki, hardware_model, make_token):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite serialises writers and ignores select_for_update)")
    from devices.enrollment import EnrollmentError, device_enroll

    token, key = make_token(max_uses=3)
    results: list[str] = []
    start = threading.Barrier(8)

    def attempt(i: int) -> None:
        body = enroll_body(key, serial=f"SN-race-{i}")
        start.wait(timeout=10)
        try:
            device_enroll(
                token=key,
                csr_pem=body["csr_pem"],
                serial=body["serial"],
                hardware_model="cam-x1",
                source="test",
            )
            results.append("ok")
        except EnrollmentError as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["ok"] * 3 + ["token_used_up"] * 5
    token.refresh_from_db()
    assert token.uses == 3 and Device.objects.count() == 3
