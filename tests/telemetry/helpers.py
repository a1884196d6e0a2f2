"""Building device messages the way a device does: protocol.messages.make + encode, protocol.topics."""

from __future__ import annotations

import time

from django.utils import timezone

from demo.components import IngestComponent
from protocol import topics
from protocol.messages import Status, Telemetry, encode, make
from telemetry.ingest.types import RawMessage


def sample(ts: float | None = None, **fields) -> dict:
    values = {"ts": time.time() if ts is None else ts, "cpu_pct": 40.0, "mem_pct": 50.0, "link": "wifi"}
    values.update(fields)
    return values


def telemetry_payload(samples: list[dict] | None = None, **envelope) -> bytes:
    return encode(make(Telemetry, samples=samples or [sample()], **envelope))


def status_payload(state: str = "online", **fields) -> bytes:
    fields.setdefault("agent_version", "1.4.0")
    return encode(make(Status, state=state, **fields))


def raw(
    device_id: str, kind: str, payload: bytes, *, topic: str | None = None, received_at=None
) -> RawMessage:
    return RawMessage(
        topic=topic or topics.up(device_id, kind), payload=payload, received_at=received_at or timezone.now()
    )


class IngestThread(IngestComponent):
    """The demo's ingest thread (the `manage.py ingest` runner) in the test process."""

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        assert not self.thread.is_alive(), "ingest did not stop"


def ingest_settings(settings, broker) -> None:
    """Point the server's MQTT settings at `broker`'s server listener as fleet-ingest, as deployed."""
    fleet_pki = broker.fleet_pki
    settings.MQTT_HOST, settings.MQTT_PORT = broker.host, broker.server_port
    settings.MQTT_TLS = True
    settings.MQTT_CA_FILE = fleet_pki.ca_file
    settings.MQTT_CLIENT_CERT, settings.MQTT_CLIENT_KEY = (
        fleet_pki.ingest.cert_file,
        fleet_pki.ingest.key_file,
    )
    settings.MQTT_PROTOCOL = "auto"
    settings.INGEST_BATCH_MS = 20


def publish_as_devices(
    broker, identities, per_device: int, *, prefix: str, workers: int = 8
) -> set[tuple[str, str]]:
    """Each identity connects to `broker`'s device listener with its own certificate, publishes
    `per_device` QoS 1 telemetry messages, waits for every PUBACK and disconnects, as a fleet of
    cameras would. Returns the (device_id, message_id) pairs the broker acknowledged."""
    from concurrent.futures import ThreadPoolExecutor

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    def one(identity) -> set[tuple[str, str]]:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=identity.name, protocol=paho.MQTTv311)
        client.tls_set(
            ca_certs=broker.fleet_pki.ca_file, certfile=identity.cert_file, keyfile=identity.key_file
        )
        client.max_inflight_messages_set(per_device)
        client.connect(broker.host, broker.port, keepalive=30)
        client.loop_start()
        try:
            topic, sent = topics.up(identity.name, "telemetry"), []
            for i in range(per_device):
                message_id = f"{prefix}-{identity.name}-{i}"
                sent.append((message_id, client.publish(topic, telemetry_payload(id=message_id), qos=1)))
            for _, info in sent:
                info.wait_for_publish(30)
            return {(identity.name, message_id) for message_id, info in sent if info.is_published()}
        finally:
            client.disconnect()
            client.loop_stop()

    with ThreadPoolExecutor(workers) as pool:
        return set().union(*pool.map(one, identities))
