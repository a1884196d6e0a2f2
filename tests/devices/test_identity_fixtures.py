"""Fixtures for the identity tests: the test CA installed as the server's PKI, tokens, enrolling clients.

Imported by the identity test modules (tests/devices/test_enroll*.py, test_revocation*.py,
test_identity*.py, tests/broker/test_enrolled_*.py); holds no tests itself.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from fleet import broker_runtime, pki

ENROLL_URL = "/api/v1/enroll/"


@pytest.fixture
def identity_pki(fleet_pki, settings, tmp_path):
    """The session's PKI (the one the real brokers trust) as the server's PKI_DIR: a copy, which a
    test may rotate or break without touching the session's."""
    directory = tmp_path / "pki"
    shutil.copytree(fleet_pki.directory, directory)
    settings.PKI_DIR = directory
    settings.MQTT_CA_FILE = fleet_pki.ca_file
    broker_runtime.reset()
    yield fleet_pki
    broker_runtime.reset()


@pytest.fixture
def unthrottled(throttle_rates):
    """Enrollment tests make many calls from one address; the throttle test sets its own rate."""
    throttle_rates(enroll="100000/min")


@pytest.fixture
def hardware_model(db):
    from tests.factories import HardwareModelFactory

    return HardwareModelFactory(name="cam-x1")


@pytest.fixture
def make_token(db):
    """make_token(**presets) -> (EnrollmentToken, key)."""
    from devices.enrollment import enrollment_token_create
    from fleet.audit import Actor

    def make(**kwargs):
        kwargs.setdefault("name", f"batch {uuid.uuid4().hex[:6]}")
        issued = enrollment_token_create(actor=Actor.system("test"), **kwargs)
        return issued.token, issued.key

    return make


@dataclass
class Enrolled:
    """What a camera holds after a successful enrollment, written to disk as paho wants it."""

    device_id: str
    cert_pem: str
    key: pki.PrivateKey
    cert_file: str
    key_file: str
    body: dict

    @property
    def name(self) -> str:  # tests.fixtures.brokers.ClientCert compatibility for MqttProbe
        return self.device_id

    @property
    def serial(self) -> int:
        return pki.load_certificate(self.cert_pem).serial_number


def csr_for(key=None, common_name: str = "camera") -> tuple[object, str]:
    key = key or pki.generate_key()
    return key, pki.create_csr(key=key, common_name=common_name).decode()


def enroll_body(
    token: str, *, serial: str | None = None, hardware_model: str = "cam-x1", **overrides
) -> dict:
    key, csr = csr_for()
    body = {
        "token": token,
        "csr_pem": csr,
        "serial": serial or f"SN-{uuid.uuid4().hex[:12]}",
        "hardware_model": hardware_model,
        "agent_version": "1.0.0",
    }
    body.update(overrides)
    body["_key"] = key
    return body


def post_enroll(client: APIClient, body: dict):
    payload = {k: v for k, v in body.items() if not k.startswith("_")}
    return client.post(ENROLL_URL, payload, format="json")


@pytest.fixture
def enroll(identity_pki, unthrottled, hardware_model, tmp_path):
    """enroll(token, serial=None) -> Enrolled, through the real endpoint; asserts 201."""

    def do(token: str, serial: str | None = None) -> Enrolled:
        body = enroll_body(token, serial=serial)
        response = post_enroll(APIClient(), body)
        assert response.status_code == 201, response.content
        data = response.json()
        stem = Path(tmp_path) / f"{data['device_id']}-{uuid.uuid4().hex[:6]}"
        key_file, cert_file = f"{stem}.key", f"{stem}.crt"
        pki.write_atomic(key_file, pki.private_key_pem(body["_key"]), mode=0o600)
        pki.write_atomic(cert_file, data["certificate_pem"])
        return Enrolled(
            device_id=data["device_id"],
            cert_pem=data["certificate_pem"],
            key=body["_key"],
            cert_file=cert_file,
            key_file=key_file,
            body=data,
        )

    return do
