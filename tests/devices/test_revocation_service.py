# ruff: noqa: F811 - pytest fixtures imported from tests/devices/test_identity_fixtures.py
"""Revocation in the database and its hand-off to the broker (the real brokers: tests/broker/test_enrolled_*)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from devices.identity_selectors import certificate_is_revoked, revoked_certificates
from devices.models import Device, DeviceState
from devices.models_identity import DeviceCertificate
from devices.revocation import crl_refresh, revocation_apply
from fleet import broker_runtime
from fleet.models import AuditEntry
from tests.api_base import assert_error_body
from tests.devices.test_identity_fixtures import (  # noqa: F401 - fixtures
    enroll,
    hardware_model,
    identity_pki,
    make_token,
    unthrottled,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def pushed(monkeypatch):
    """Device ids whose revocation was handed to the broker after commit."""
    calls: list[str] = []
    monkeypatch.setattr("devices.revocation.revocation_apply", lambda *, device_id: calls.append(device_id))
    return calls


@pytest.fixture
def enrolled(enroll, make_token):
    _, key = make_token()
    return enroll(key)


def test_operator_revokes_a_device_and_the_broker_hears_after_commit(
    operator_client, enrolled, pushed, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            f"/api/v1/devices/{enrolled.device_id}/revoke/", {"reason": "stolen"}, format="json"
        )
    assert response.status_code == 200, response.content
    assert response.json() == {"device_id": enrolled.device_id, "revoked": 1}
    record = DeviceCertificate.objects.get(serial=str(enrolled.serial))
    assert record.revoked_at is not None and record.reason == "stolen"
    assert certificate_is_revoked(serial=enrolled.serial)
    assert pushed == [enrolled.device_id]
    entry = AuditEntry.objects.get(action="device.certificates_revoke")
    assert entry.actor_label == operator_client.user.username and entry.after["serials"] == [record.serial]


def test_viewers_cannot_revoke_and_unknown_devices_are_404(api_client_for, enrolled, operator_client):
    assert_error_body(api_client_for("viewer").post(f"/api/v1/devices/{enrolled.device_id}/revoke/"), 403)
    assert_error_body(operator_client.post("/api/v1/devices/cam-nobody/revoke/"), 404)
    assert DeviceCertificate.objects.get().revoked_at is None


@pytest.mark.parametrize("state", [DeviceState.QUARANTINED, DeviceState.DECOMMISSIONED])
def test_quarantine_and_decommission_revoke_the_certificates(
    operator_client, enrolled, pushed, django_capture_on_commit_callbacks, state
):
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            f"/api/v1/devices/{enrolled.device_id}/transition/", {"state": state}, format="json"
        )
    assert response.status_code == 200, response.content
    assert DeviceCertificate.objects.get().reason == state
    assert pushed == [enrolled.device_id]


def test_certificates_are_listed_per_device(api_client_for, enroll, make_token):
    _, key = make_token(max_uses=2)
    first = enroll(key, serial="SN-list")
    second = enroll(key, serial="SN-list")
    rows = api_client_for("viewer").get(f"/api/v1/devices/{first.device_id}/certificates/").json()["results"]
    assert [(r["serial"], r["status"]) for r in rows] == [
        (str(second.serial), "valid"),
        (str(first.serial), "revoked"),
    ]


def test_the_crl_holds_revoked_certificates_until_they_expire(enrolled):
    record = DeviceCertificate.objects.get()
    assert revoked_certificates() == []
    DeviceCertificate.objects.filter(pk=record.pk).update(revoked_at=timezone.now())
    assert [serial for serial, _ in revoked_certificates()] == [enrolled.serial]
    after_expiry = record.not_after + dt.timedelta(seconds=1)
    assert revoked_certificates(now=after_expiry) == []


def test_a_revoked_certificate_stays_revoked_when_its_device_is_deleted(operator_client, enrolled, pushed):
    operator_client.post(f"/api/v1/devices/{enrolled.device_id}/transition/", {"state": "decommissioned"})
    assert operator_client.delete(f"/api/v1/devices/{enrolled.device_id}/").status_code == 204
    assert not Device.objects.exists()
    assert [serial for serial, _ in revoked_certificates()] == [enrolled.serial]


class RecordingBroker:
    """Stands in for the embedded broker's kick(); the real one is exercised in tests/broker."""

    def __init__(self) -> None:
        self.kicked: list[str] = []

    def kick(self, device_id: str) -> int:
        self.kicked.append(device_id)
        return 1


def test_an_unconfirmed_revocation_is_retried_by_the_crl_refresh(enrolled, settings):
    settings.MQTT_BROKER = "embedded"
    DeviceCertificate.objects.update(revoked_at=timezone.now())
    broker_runtime.set_embedded(None)
    assert revocation_apply(device_id=enrolled.device_id) is False  # no broker in this process
    assert DeviceCertificate.objects.get().broker_applied_at is None

    broker = RecordingBroker()
    broker_runtime.set_embedded(broker)
    try:
        assert crl_refresh() == 1
    finally:
        broker_runtime.set_embedded(None)
    assert broker.kicked == [enrolled.device_id]
    assert DeviceCertificate.objects.get().broker_applied_at is not None
    assert crl_refresh() == 0  # nothing left to retry
