"""The ingest against a real Mosquitto on the generated configuration (mTLS, per-device ACL, persistence):
publish -> row, redelivery, dead letters, status, broker restart, the ingest away while devices publish."""

import json
import time
import uuid

import paho.mqtt.client as paho
import pytest
from django.db import OperationalError
from paho.mqtt.enums import CallbackAPIVersion

from fleet import mqtt
from protocol import topics
from protocol.messages import MAX_PAYLOAD_BYTES
from telemetry.ingest import metrics
from telemetry.models import DeadLetter, DeviceStatus, MetricSample, ProcessedMessage
from tests.factories import DeviceFactory
from tests.fixtures.mqtt import free_port
from tests.fixtures.mqtt import wait_until as _wait_until
from tests.telemetry.helpers import IngestThread, ingest_settings, sample, status_payload, telemetry_payload

pytestmark = [pytest.mark.mosquitto, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker_settings(settings, mosquitto):
    ingest_settings(settings, mosquitto)
    return settings


@pytest.fixture
def device_publisher(mosquitto, fleet_pki, test_publisher):
    """A publisher with `device`'s own certificate (what the broker's ACL lets it publish)."""
    return lambda device_id, **kwargs: test_publisher(mosquitto, fleet_pki.device(device_id), **kwargs)


@pytest.fixture
def ingest(broker_settings):
    made = []

    def start(**overrides) -> IngestThread:
        overrides.setdefault("client_id", f"ingest-{uuid.uuid4().hex[:6]}")
        thread = IngestThread(**overrides).start()
        made.append(thread)
        assert wait_until(lambda: thread.thread.is_alive() and _connected(thread), 10), (
            "ingest did not connect"
        )
        return thread

    yield start
    for thread in made:
        if thread.thread.is_alive():
            thread.stop()
    mqtt.close_publisher()


def wait_until(predicate, timeout: float) -> bool:
    """wait_until that reads through SQLite's shared-cache table locks (the ingest thread writes meanwhile)."""

    def attempt():
        try:
            return predicate()
        except OperationalError:
            return False

    return _wait_until(attempt, timeout)


def _connected(thread: IngestThread) -> bool:
    from telemetry.ingest import metrics

    return metrics.CONNECTED._value.get() == 1 and thread.thread.is_alive()


def test_published_message_becomes_rows_and_a_redelivered_id_does_not(ingest, device_publisher):
    device = DeviceFactory()
    ingest()
    publisher = device_publisher(device.device_id)
    first = telemetry_payload([sample(cpu_pct=11), sample(cpu_pct=12)], id="m-1")
    publisher.publish(topics.up(device.device_id, "telemetry"), first)
    assert wait_until(lambda: MetricSample.objects.filter(device=device).count() == 2, 10)

    publisher.publish(topics.up(device.device_id, "telemetry"), first)  # the same id again
    publisher.publish(topics.up(device.device_id, "telemetry"), telemetry_payload(id="m-2"))
    assert wait_until(lambda: ProcessedMessage.objects.filter(message_id="m-2").exists(), 10)
    assert MetricSample.objects.filter(device=device).count() == 3
    assert ProcessedMessage.objects.filter(device_id=device.device_id).count() == 2


def _status(**fields) -> bytes:
    return json.dumps({"v": 1, "id": uuid.uuid4().hex, "ts": 1.0, "state": "online", **fields}).encode()


# What a broken or hostile device sends, and the reason each must be refused with. Every one reaches
# the decoder inside a batch with good messages around it; none may cost the batch its normal commit.
POISON = [
    ("telemetry", b'{"v": 1, "id": ', "bad_json"),
    ("telemetry", b'{"v": 7, "id": "x1", "ts": 1.0, "samples": []}', "unknown_version"),
    ("telemetry", b'{"v": 1, "id": "x2", "ts": 1.0, "samples": [{"ts": 1.0, "cpu_pct": -5, "mem_pct": 1}]}', "schema"),
    ("telemetry", b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "oversize"),
    # Invalid UTF-8 inside a JSON string (it raised UnicodeDecodeError out of the decoder).
    ("status", b'{"v":1,"id":"\xff\xfe","ts":1,"state":"online","agent_version":"1"}', "bad_json"),
    # Text PostgreSQL cannot store (it became a handler_error).
    ("status", _status(agent_version="3.1\u0000"), "schema"),
    ("ack", b'{"v":1,"id":"a1","ts":1,"command_id":"c1","status":"failed","detail":"x\\u0000"}', "schema"),
    # One key twice: which one wins depends on the parser.
    ("status", b'{"v":1,"id":"d1","ts":1,"state":"online","agent_version":"1","agent_version":"2"}', "bad_json"),
    # An integer beyond the I-JSON safe range, deep nesting in a free-form field.
    ("ota", b'{"v":1,"id":"o1","ts":1,"deployment_id":"1","serial":1180591620717411303424,"model":"m","state":"failed"}', "schema"),
    ("ack", b'{"v":1,"id":"a2","ts":1,"command_id":"c","status":"failed","result":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "bad_json"),
    ("ack", b'{"v":1,"id":"a3","ts":1,"command_id":"c","status":"failed","result":{"a":' + b"[" * 40 + b"]" * 40 + b"}}", "schema"),
]  # fmt: skip


def test_each_bad_input_is_dead_lettered_and_the_batch_commits_normally(ingest, device_publisher):
    device = DeviceFactory()
    ingest()
    one_by_one = metrics.ONE_BY_ONE._value.get()
    publisher = device_publisher(device.device_id)
    for i, (kind, payload, _) in enumerate(POISON):
        publisher.publish(
            topics.up(device.device_id, "telemetry"), telemetry_payload(id=f"good-{i}"), wait=False
        )
        publisher.publish(topics.up(device.device_id, kind), payload, wait=False)
    publisher.publish(topics.up(device.device_id, "telemetry"), telemetry_payload(id="after-the-bad-ones"))
    # An unknown kind, and a device the registry does not know (its certificate is real).
    publisher.publish(f"{topics.ROOT}/{device.device_id}/up/firmware", telemetry_payload())
    device_publisher("cam-forged-999").publish(topics.up("cam-forged-999", "telemetry"), telemetry_payload())
    assert publisher.wait_all(10)

    expected = sorted([reason for _, _, reason in POISON] + ["topic", "unknown_device"])
    assert wait_until(lambda: DeadLetter.objects.count() == len(expected), 15), DeadLetter.objects.count()
    assert sorted(DeadLetter.objects.values_list("reason", flat=True)) == expected
    assert wait_until(lambda: ProcessedMessage.objects.filter(message_id="after-the-bad-ones").exists(), 10)
    assert MetricSample.objects.filter(device=device).count() == len(POISON) + 1
    assert metrics.ONE_BY_ONE._value.get() == one_by_one  # no batch fell back to one-by-one commits
    oversize = DeadLetter.objects.filter(reason="oversize").first()
    assert oversize.payload_size > MAX_PAYLOAD_BYTES and len(oversize.payload) == 4096


def test_birth_and_last_will_mark_the_device_online_then_offline(ingest, mosquitto, fleet_pki):
    device = DeviceFactory()
    ingest()
    identity = fleet_pki.device(device.device_id)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device.device_id, protocol=paho.MQTTv311)
    client.tls_set(ca_certs=fleet_pki.ca_file, certfile=identity.cert_file, keyfile=identity.key_file)
    status_topic = topics.up(device.device_id, "status")
    will = status_payload(
        "offline", reason="connection_lost", agent_version="3.1.0", id=f"lw-{device.device_id}"
    )
    client.will_set(status_topic, will, qos=1, retain=True)
    client.connect(mosquitto.host, mosquitto.port, keepalive=5)
    client.loop_start()
    client.publish(
        status_topic, status_payload("online", agent_version="3.1.0"), qos=1, retain=True
    ).wait_for_publish(5)
    assert wait_until(lambda: DeviceStatus.objects.filter(device=device, online=True).exists(), 10)

    client.loop_stop()
    client.socket().close()  # the link drops without DISCONNECT: the broker sends the will
    assert wait_until(lambda: DeviceStatus.objects.filter(device=device, online=False).exists(), 10)
    status = DeviceStatus.objects.get(device=device)
    assert status.reason == "connection_lost"
    device.refresh_from_db()
    assert device.agent_version == "3.1.0"


def test_broker_restart_in_the_middle_loses_nothing(ingest, mosquitto, device_publisher):
    # A plain subscription: Mosquitto 2.0.11 restores it from persistence, a shared one it does not.
    devices = [DeviceFactory() for _ in range(5)]
    ingest(client_id="ingest-restart", shared=False)
    publishers = [device_publisher(d.device_id) for d in devices]
    total = 3000
    sent = []
    for i in range(total):
        device, publisher = devices[i % len(devices)], publishers[i % len(devices)]
        message_id = f"r-{i}"
        sent.append((device.device_id, message_id))
        publisher.publish(
            topics.up(device.device_id, "telemetry"), telemetry_payload(id=message_id), wait=False
        )
        if i == total // 2:
            mosquitto.restart()
    assert all(p.wait_all(30) for p in publishers), "a publisher did not get every PUBACK back"
    assert wait_until(lambda: ProcessedMessage.objects.count() >= total, 45), ProcessedMessage.objects.count()
    stored = set(ProcessedMessage.objects.values_list("device_id", "message_id"))
    assert stored == set(sent)
    assert MetricSample.objects.count() == total


def test_stop_finishes_the_current_batch_and_acknowledges_it(ingest, device_publisher):
    device = DeviceFactory()
    thread = ingest(client_id="ingest-stop")
    publisher = device_publisher(device.device_id)
    for i in range(200):
        publisher.publish(
            topics.up(device.device_id, "telemetry"), telemetry_payload(id=f"s-{i}"), wait=False
        )
    assert publisher.wait_all(10)
    thread.stop()
    done = ProcessedMessage.objects.count()
    # What was committed was acknowledged: a restart with the same session gets only the rest.
    again = ingest(client_id="ingest-stop")
    assert wait_until(lambda: ProcessedMessage.objects.count() == 200, 10)
    again.stop()
    assert again.runner.batches >= (1 if done < 200 else 0)
    assert MetricSample.objects.count() == 200


def test_publish_many_keeps_order_and_waits_for_every_puback(broker_settings, mosquitto, fleet_pki):
    """A wave of offers goes out pipelined (no round trip per message), in order, all acknowledged."""
    received = []
    identity = fleet_pki.device("cam-pub-2")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=identity.name, protocol=paho.MQTTv5)
    client.tls_set(ca_certs=fleet_pki.ca_file, certfile=identity.cert_file, keyfile=identity.key_file)
    client.on_message = lambda c, u, m: received.append(m.payload)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    client.subscribe(topics.down("cam-pub-2", "cmd"), qos=1)
    time.sleep(0.2)
    ok = mqtt.PUBLISHED.labels("ok")
    before = ok._value.get()
    payloads = [b'{"n": %d}' % i for i in range(2500)]  # many times paho's in-flight window (fleet.mqtt: 100)
    try:
        mqtt.publish_many([(topics.down("cam-pub-2", "cmd"), p) for p in payloads], qos=1)
        assert ok._value.get() - before == len(payloads)  # every PUBACK was in before it returned
        assert wait_until(lambda: len(received) == len(payloads), 10)
        assert received == payloads
    finally:
        client.loop_stop()
        mqtt.close_publisher()
    mqtt.publish_many([])  # nothing to send: no connection needed


def test_a_publish_the_broker_refuses_is_an_error_not_a_success(broker_settings, mosquitto):
    """Mosquitto refuses, with PUBACK reason 0x87 on MQTT 5, what the server identity's ACL does not
    allow: paho would count it published; the server must not think the device was told."""
    refused = mqtt.PUBLISHED.labels("refused")
    before = refused._value.get()
    try:
        with pytest.raises(mqtt.MqttError) as error:
            mqtt.publish_many([(topics.down("cam-pub-3", "cmd"), b"{}"), ("not/fleet/topic", b"{}")])
        assert error.value.code == "mqtt_publish_refused" and "not/fleet/topic" in error.value.message
        assert refused._value.get() - before == 1
        mqtt.publish(topics.down("cam-pub-3", "cmd"), b"{}")  # the connection is still good
    finally:
        mqtt.close_publisher()


def test_publish_waits_for_the_broker_and_fails_clearly_without_one(broker_settings, mosquitto, fleet_pki):
    received = []
    identity = fleet_pki.device("cam-pub-1")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=identity.name, protocol=paho.MQTTv5)
    client.tls_set(ca_certs=fleet_pki.ca_file, certfile=identity.cert_file, keyfile=identity.key_file)
    client.on_message = lambda c, u, m: received.append(m)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    client.subscribe(topics.down("cam-pub-1", "cmd"), qos=1)
    time.sleep(0.2)
    try:
        mqtt.publish(topics.down("cam-pub-1", "cmd"), b'{"x": 1}')
        assert wait_until(lambda: received, 5)
        assert received[0].payload == b'{"x": 1}'
    finally:
        client.loop_stop()
        mqtt.close_publisher()

    broker_settings.MQTT_PORT = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(mqtt.MqttError) as refused:
        mqtt.publish(topics.down("cam-pub-1", "cmd"), b"{}", timeout=2)
    assert refused.value.code == "mqtt_unavailable" and time.monotonic() - started < 5
