# ruff: noqa: F811 - pytest fixtures imported from tests/devices/test_identity_fixtures.py
"""up/cert renewal: the handler the ingest calls, and the down/cert answer it publishes after commit."""

from __future__ import annotations

import pytest
from cryptography import x509
from django.utils import timezone

from devices.enrollment import MAX_LIVE_CERTIFICATES
from devices.handlers import handle_cert
from devices.models import Device, DeviceState
from devices.models_identity import DeviceCertificate
from fleet import pki
from fleet.models import AuditEntry
from protocol import topics
from protocol.messages import CertIssued, CertRefused, CertRequest, decode_down, make
from telemetry.ingest.types import Inbound
from tests.devices.test_identity_fixtures import (  # noqa: F401 - fixtures
    csr_for,
    enroll,
    hardware_model,
    identity_pki,
    make_token,
    unthrottled,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    """(topic, decoded message) of every publish; fleet.mqtt.publish_on_commit ends in publish_many."""
    sent: list[tuple[str, object]] = []

    def publish_many(messages, *, qos=1, retain=False, timeout=None):
        sent.extend((topic, decode_down(topics.parse(topic).kind, payload)) for topic, payload in messages)

    monkeypatch.setattr("fleet.mqtt.publish_many", publish_many)
    return sent


@pytest.fixture
def enrolled(enroll, make_token):
    _, key = make_token()
    return enroll(key)


def _inbound(device_id: str, csr_pem: str, *, topic_device: str | None = None) -> Inbound:
    device = Device.objects.get(device_id=device_id)
    message = make(CertRequest, request_id="renew-1", csr_pem=csr_pem)
    return Inbound(
        device_pk=device.pk,
        device_id=device_id,
        kind="cert",
        message=message,
        received_at=timezone.now(),
        topic=topics.up(topic_device or device_id, "cert"),
    )


def _renew(items, capture) -> None:
    with capture(execute=True):
        handle_cert(items=items)


def test_renewal_signs_the_devices_own_csr_and_keeps_the_old_certificate_valid(
    enrolled, published, identity_pki, django_capture_on_commit_callbacks
):
    key, csr = csr_for(common_name=enrolled.device_id)
    _renew([_inbound(enrolled.device_id, csr)], django_capture_on_commit_callbacks)

    [(topic, answer)] = published
    assert topic == topics.down(enrolled.device_id, "cert")
    assert isinstance(answer, CertIssued) and answer.request_id == "renew-1"
    cert = x509.load_pem_x509_certificate(answer.certificate_pem.encode())
    cert.verify_directly_issued_by(identity_pki.ca_cert)
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == enrolled.device_id
    rows = DeviceCertificate.objects.filter(common_name=enrolled.device_id)
    assert rows.count() == 2 and not rows.filter(revoked_at__isnull=False).exists()  # the old one stays valid
    assert AuditEntry.objects.filter(action="device.certificate_renew", source="device").exists()


def _answer_error(published) -> str:
    [(_, answer)] = published
    assert isinstance(answer, CertRefused) and answer.detail
    return answer.error


def test_a_csr_naming_another_device_is_refused(enrolled, published, django_capture_on_commit_callbacks):
    _, csr = csr_for(common_name="cam-someone-else")
    _renew([_inbound(enrolled.device_id, csr)], django_capture_on_commit_callbacks)
    assert _answer_error(published) == "csr_subject_mismatch"
    assert DeviceCertificate.objects.count() == 1
    assert AuditEntry.objects.get(action="device.certificate_renew_refused").after["reason"] == (
        "csr_subject_mismatch"
    )


def test_a_weak_csr_is_refused(enrolled, published, django_capture_on_commit_callbacks):
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = pki.create_csr(key=weak, common_name=enrolled.device_id).decode()
    _renew([_inbound(enrolled.device_id, csr)], django_capture_on_commit_callbacks)
    assert _answer_error(published) == "key_type_not_allowed"


def test_a_quarantined_device_gets_no_certificate(enrolled, published, django_capture_on_commit_callbacks):
    Device.objects.filter(device_id=enrolled.device_id).update(state=DeviceState.QUARANTINED)
    _, csr = csr_for(common_name=enrolled.device_id)
    _renew([_inbound(enrolled.device_id, csr)], django_capture_on_commit_callbacks)
    assert _answer_error(published) == "revoked"


def test_renewals_stop_at_the_live_certificate_limit(enrolled, published, django_capture_on_commit_callbacks):
    items = [_inbound(enrolled.device_id, csr_for(common_name=enrolled.device_id)[1]) for _ in range(6)]
    _renew(items, django_capture_on_commit_callbacks)
    results = [type(answer).__name__ for _, answer in published]
    assert results == ["CertIssued"] * (MAX_LIVE_CERTIFICATES - 1) + ["CertRefused"] * (
        7 - MAX_LIVE_CERTIFICATES
    )
    assert published[-1][1].error == "renewal_limit"


def test_a_request_whose_topic_names_another_device_is_not_answered(
    enroll, make_token, published, django_capture_on_commit_callbacks
):
    _, key = make_token(max_uses=2)
    a, b = enroll(key), enroll(key)
    _, csr = csr_for(common_name=b.device_id)
    _renew([_inbound(a.device_id, csr, topic_device=b.device_id)], django_capture_on_commit_callbacks)
    assert published == [] and DeviceCertificate.objects.count() == 2
