"""End to end over a real Mosquitto (mTLS, minted device certificates): the server publishes signed
offers on down/ota, simulated devices verify them with protocol.verify_manifest and answer on up/ota,
and the engine (ticks + the up/ota handler fed by an ingest subscriber) drives the rollout."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from ota.models import Deployment, DeviceUpdate
from ota.services import deployment_create, deployment_start, tick
from protocol import topics
from protocol.messages import decode_down, encode
from telemetry.ingest.services import ingest_batch
from tests.factories import DeviceFactory
from tests.telemetry.helpers import raw, status_payload


def raw_message(topic: str, payload: bytes):
    return raw("", "", payload, topic=topic)


pytestmark = [pytest.mark.mosquitto, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server_mqtt(settings, mosquitto_broker, fleet_pki, monkeypatch):
    """fleet.mqtt pointed at the broker's server listener with the fleet-ingest identity."""
    from fleet import mqtt

    settings.MQTT_HOST, settings.MQTT_PORT, settings.MQTT_TLS = (
        mosquitto_broker.host,
        mosquitto_broker.server_port,
        True,
    )
    settings.MQTT_CA_FILE = fleet_pki.ca_file
    settings.MQTT_CLIENT_CERT, settings.MQTT_CLIENT_KEY = (
        fleet_pki.ingest.cert_file,
        fleet_pki.ingest.key_file,
    )
    mqtt.close_publisher()
    yield mqtt
    mqtt.close_publisher()


def test_rollout_over_mosquitto_with_verifying_devices(
    server_mqtt, mosquitto_broker, fleet_pki, mqtt_probe, system, release_factory, hardware, sim
):
    release = release_factory()
    devices = [DeviceFactory(hardware_model=hardware, last_seen_at=timezone.now()) for _ in range(6)]
    late = DeviceFactory(hardware_model=hardware, last_seen_at=None)  # offline when its wave starts
    broken = devices[-1].device_id  # its new model fails the health check
    ingest = mqtt_probe(mosquitto_broker, fleet_pki.server_identity("fleet-ingest"), server_listener=True)
    assert ingest.start()
    ingest.subscribe(topics.ingest_filter(False))
    agents, clients = {}, {}

    def connect(device_id: str) -> None:
        client = mqtt_probe(mosquitto_broker, fleet_pki.device(device_id))
        assert client.start(), client.failure
        client.subscribe(topics.device_subscription(device_id))
        clients[device_id] = client
        agents[device_id] = sim(device_id)

    for device in devices:
        connect(device.device_id)

    deployment = deployment_create(
        actor=system,
        data={
            "name": "e2e",
            "release": release,
            "targets": {"devices": [d.device_id for d in [*devices, late]]},
            "waves": [50, 100],
            "device_timeout_s": 60,
        },
    )
    deployment_start(actor=system, deployment=deployment)

    def device_side() -> None:
        for device_id, client in clients.items():
            for message in client.received(timeout=0.01):
                if not message.payload:
                    continue
                offer = decode_down("ota", message.payload)
                agent = agents[device_id]
                if offer.manifest["signed"]["serial"] == agent.installed:
                    continue  # the retained copy and the re-send on reconnect: already installed
                manifest = agent.verify(offer)  # the shared verifier, as the edge agent does
                assert manifest.serial == release.serial and message.retain in (True, False)
                outcome = "rolled_back" if device_id == broken else "succeeded"
                for state in ("downloading", "verifying", "installing", "health_check", outcome):
                    reason = "health_check_failed: too_slow" if state == "rolled_back" else None
                    client.publish(
                        topics.up(device_id, "ota"), encode(agent.report(offer, state, reason=reason))
                    )

    def server_side() -> None:
        # The real ingest path: decode, deduplicate, dispatch up/ota and up/status to their handlers.
        batch = [raw_message(m.topic, m.payload) for m in ingest.received(timeout=0.05)]
        if batch:
            result = ingest_batch(messages=batch)
            assert not result.dead_letters, result
        tick()

    deadline = time.monotonic() + 30
    connected_late = False
    while time.monotonic() < deadline:
        device_side()
        server_side()
        deployment.refresh_from_db()
        finished = DeviceUpdate.objects.filter(deployment=deployment, state__in=("succeeded", "rolled_back"))
        if not connected_late and finished.count() == len(devices):
            # The late device comes online: the retained offer is waiting for it, and its birth
            # message, through the ingest's status handler, re-sends it and starts its timeout clock.
            connect(late.device_id)
            clients[late.device_id].publish(topics.up(late.device_id, "status"), status_payload("online"))
            connected_late = True
        if deployment.state == "completed":
            break
    deployment.refresh_from_db()
    final = dict(DeviceUpdate.objects.filter(deployment=deployment).values_list("device__device_id", "state"))
    assert deployment.state == "completed", final
    assert final.pop(broken) == "rolled_back"
    assert set(final.values()) == {"succeeded"}
    assert agents[late.device_id].installed == release.serial
    late_update = DeviceUpdate.objects.get(deployment=deployment, device=late)
    assert late_update.delivered_at is not None  # its timeout counted from the birth, not the wave
    assert Deployment.objects.get(pk=deployment.pk).plan[0]["size"] == 4
