# ruff: noqa: F811 - pytest fixtures imported from tests/devices/test_identity_fixtures.py
"""Enrolled devices on the real brokers: certificates from POST /enroll/, revocation from the API.

Each test runs on Mosquitto (revoked through fleet.broker_runtime's MosquittoRevoker built
from settings: CRL + SIGHUP + dynsec kick) and on the embedded broker as `manage.py demo`
runs it (demo.components.EmbeddedBrokerComponent: is_revoked reads DeviceCertificate, revocation kicks).
"""

from __future__ import annotations

import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from demo.components import EmbeddedBrokerComponent
from fleet import broker_runtime
from protocol import topics
from tests.devices.test_identity_fixtures import (  # noqa: F401 - fixtures
    enroll,
    hardware_model,
    identity_pki,
    make_token,
    unthrottled,
)
from tests.fixtures.brokers import EmbeddedBrokerHandle

# Committed rows: the embedded broker checks revocation from its own threads.
pytestmark = pytest.mark.django_db(transaction=True)

REVOKE_DEADLINE_S = 5.0


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request, identity_pki, settings, tmp_path):
    """A broker wired to the server's settings, so revocation goes through fleet.broker_runtime."""
    if request.param == "mosquitto":
        running = request.getfixturevalue("mosquitto_broker")
        pid_file = tmp_path / "mosquitto.pid"
        pid_file.write_text(str(running.pid))
        settings.MQTT_BROKER = "mosquitto"
        settings.MQTT_BROKER_DIR = running.directory  # its CRL is <dir>/crl.pem
        settings.MQTT_BROKER_PID_FILE = str(pid_file)
        settings.MQTT_BROKER_USER = ""  # the test broker runs as root on a private temp dir
        settings.MQTT_HOST, settings.MQTT_PORT = running.host, running.server_port
        settings.MQTT_ADMIN_CERT, settings.MQTT_ADMIN_KEY = (
            identity_pki.admin.cert_file,
            identity_pki.admin.key_file,
        )
        broker_runtime.reset()
        yield running
        broker_runtime.reset()
        # Give the shared broker back the CRL its own fixture expects.
        running.revoker.publish_crl(list(running.revoked))
        running.revoker.wait_reloaded()
        return
    settings.MQTT_BROKER = "embedded"
    component = EmbeddedBrokerComponent(host="127.0.0.1", port=0)
    component.start()
    try:
        yield EmbeddedBrokerHandle(
            kind="embedded",
            host="127.0.0.1",
            port=component.port,
            server_port=component.port,
            protocols=(mqtt.MQTTv311,),
            fleet_pki=identity_pki,
            broker=component.broker,
        )
    finally:
        component.stop()
        assert broker_runtime.embedded() is None


@pytest.fixture
def token_key(make_token):
    return make_token(max_uses=10)[1]


def _connect(mqtt_probe, broker, identity, **kwargs):
    probe = mqtt_probe(broker, identity, **kwargs)
    assert probe.start(), f"{identity.name} could not connect: {probe.connects} {probe.failure}"
    return probe


def _ingest(mqtt_probe, broker, fleet_pki):
    probe = _connect(
        mqtt_probe,
        broker,
        fleet_pki.ingest,
        server_listener=True,
        client_id=f"fleet-ingest-{uuid.uuid4().hex[:6]}",
    )
    probe.subscribe(f"{topics.ROOT}/#")
    return probe


def test_an_enrolled_device_talks_on_its_own_topics_only(broker, enroll, token_key, mqtt_probe, identity_pki):
    a, b = enroll(token_key), enroll(token_key)
    ingest = _ingest(mqtt_probe, broker, identity_pki)
    cam_b = _connect(mqtt_probe, broker, b)
    cam_b.subscribe(topics.device_subscription(b.device_id))
    cam_a = _connect(mqtt_probe, broker, a)
    cam_a.subscribe(topics.device_subscription(a.device_id))
    for stolen in (topics.device_subscription(b.device_id), "fleet/#", "#"):
        cam_a.subscribe(stolen)  # Mosquitto grants it, amqtt refuses: what counts is what arrives

    cam_a.publish(topics.up(a.device_id, "telemetry"), b'{"v":1,"own":true}')
    got = ingest.received(until_topic=topics.up(a.device_id, "telemetry"))
    assert [m.payload for m in got if m.topic == topics.up(a.device_id, "telemetry")] == [
        b'{"v":1,"own":true}'
    ]

    cam_a.publish(topics.up(b.device_id, "telemetry"), b"forged as B")
    cam_a.publish(topics.down(b.device_id, "cmd"), b"forged command to B")
    ingest.publish(topics.down(b.device_id, "cmd"), b"for B only")
    ingest.publish(topics.down(a.device_id, "cmd"), b"for A")
    cam_a.publish(topics.up(a.device_id, "status"), b"marker")

    seen_by_ingest = ingest.received(until_topic=topics.up(a.device_id, "status"))
    seen_by_a = cam_a.received(until_topic=topics.down(a.device_id, "cmd"))
    seen_by_b = cam_b.received(until_topic=topics.down(b.device_id, "cmd"))
    assert b"forged as B" not in [m.payload for m in seen_by_ingest]
    assert [m.payload for m in seen_by_b] == [b"for B only"]
    assert [(m.topic, m.payload) for m in seen_by_a] == [(topics.down(a.device_id, "cmd"), b"for A")]


def test_no_foreign_or_expired_certificate_gets_in(broker, mqtt_probe, identity_pki):
    assert not mqtt_probe(broker, None).start()
    assert not mqtt_probe(broker, identity_pki.foreign_device()).start()
    assert not mqtt_probe(broker, identity_pki.expired_device()).start()


def _wait_cut_off(probe, started: float) -> float:
    assert probe.wait_disconnected(REVOKE_DEADLINE_S), "still connected after revocation"
    elapsed = probe.disconnects[0][0] - started
    return elapsed


def test_a_revoked_device_is_disconnected_within_5s_and_cannot_reconnect(
    broker, enroll, token_key, mqtt_probe, operator_client
):
    cam = enroll(token_key)
    live = _connect(mqtt_probe, broker, cam)

    started = time.monotonic()
    response = operator_client.post(
        f"/api/v1/devices/{cam.device_id}/revoke/", {"reason": "stolen"}, format="json"
    )
    assert response.status_code == 200, response.content

    assert _wait_cut_off(live, started) < REVOKE_DEADLINE_S
    assert not mqtt_probe(broker, cam).start()


@pytest.mark.parametrize("state", ["decommissioned", "quarantined"])
def test_decommission_and_quarantine_cut_the_device_off(
    broker, enroll, token_key, mqtt_probe, operator_client, state
):
    cam = enroll(token_key)
    live = _connect(mqtt_probe, broker, cam)
    started = time.monotonic()
    response = operator_client.post(
        f"/api/v1/devices/{cam.device_id}/transition/", {"state": state}, format="json"
    )
    assert response.status_code == 200, response.content
    assert _wait_cut_off(live, started) < REVOKE_DEADLINE_S
    assert not mqtt_probe(broker, cam).start()


def test_reenrollment_revokes_the_old_certificate_at_the_broker(broker, enroll, token_key, mqtt_probe):
    old = enroll(token_key, serial="SN-reflash")
    live = _connect(mqtt_probe, broker, old)

    started = time.monotonic()
    new = enroll(token_key, serial="SN-reflash")

    assert new.device_id == old.device_id
    assert _wait_cut_off(live, started) < REVOKE_DEADLINE_S
    assert not mqtt_probe(broker, old).start()
    _connect(mqtt_probe, broker, new)
