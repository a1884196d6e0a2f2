"""The ingest against a real Mosquitto: publish -> row, redelivery, dead letters, status, broker restart."""

import time
import uuid

import paho.mqtt.client as paho
import pytest
from django.db import OperationalError
from paho.mqtt.enums import CallbackAPIVersion

from fleet import mqtt
from protocol import topics
from protocol.messages import MAX_PAYLOAD_BYTES
from telemetry.models import DeadLetter, DeviceStatus, MetricSample, ProcessedMessage
from tests.factories import DeviceFactory
from tests.fixtures.mqtt import HOST, free_port
from tests.fixtures.mqtt import wait_until as _wait_until
from tests.telemetry.helpers import IngestThread, sample, status_payload, telemetry_payload

pytestmark = [pytest.mark.mosquitto, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker_settings(settings, mosquitto):
    settings.MQTT_HOST, settings.MQTT_PORT, settings.MQTT_TLS = HOST, mosquitto.port, False
    settings.MQTT_PROTOCOL = "auto"
    settings.INGEST_BATCH_MS = 20
    return settings


@pytest.fixture
def ingest(broker_settings):
    made = []

    def start(**overrides) -> IngestThread:
        overrides.setdefault("client_id", f"ingest-{uuid.uuid4().hex[:6]}")
        thread = IngestThread(**overrides).start()
        made.append(thread)
        assert wait_until(lambda: thread.runner is None and _connected(thread), 10), "ingest did not connect"
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


def test_published_message_becomes_rows_and_a_redelivered_id_does_not(ingest, mosquitto, test_publisher):
    device = DeviceFactory()
    ingest()
    publisher = test_publisher(mosquitto.port)
    first = telemetry_payload([sample(cpu_pct=11), sample(cpu_pct=12)], id="m-1")
    publisher.publish(topics.up(device.device_id, "telemetry"), first)
    assert wait_until(lambda: MetricSample.objects.filter(device=device).count() == 2, 10)

    publisher.publish(topics.up(device.device_id, "telemetry"), first)  # the same id again
    publisher.publish(topics.up(device.device_id, "telemetry"), telemetry_payload(id="m-2"))
    assert wait_until(lambda: ProcessedMessage.objects.filter(message_id="m-2").exists(), 10)
    assert MetricSample.objects.filter(device=device).count() == 3
    assert ProcessedMessage.objects.filter(device_id=device.device_id).count() == 2


def test_each_bad_input_is_dead_lettered_and_the_ingest_keeps_ingesting(ingest, mosquitto, test_publisher):
    device = DeviceFactory()
    ingest()
    publisher = test_publisher(mosquitto.port)
    up = topics.up(device.device_id, "telemetry")
    bad = [
        (up, b'{"v": 1, "id": '),
        (up, b'{"v": 7, "id": "x1", "ts": 1.0, "samples": []}'),
        (up, b'{"v": 1, "id": "x2", "ts": 1.0, "samples": [{"ts": 1.0, "cpu_pct": -5, "mem_pct": 1}]}'),
        (up, b"{" + b" " * MAX_PAYLOAD_BYTES + b"}"),
        (topics.up("cam-forged-999", "telemetry"), telemetry_payload()),
        (f"{topics.ROOT}/{device.device_id}/up/firmware", telemetry_payload()),
    ]
    for topic, payload in bad:
        publisher.publish(topic, payload)
    publisher.publish(up, telemetry_payload(id="after-the-bad-ones"))

    assert wait_until(lambda: ProcessedMessage.objects.filter(message_id="after-the-bad-ones").exists(), 10)
    assert wait_until(lambda: DeadLetter.objects.count() == len(bad), 5)
    assert sorted(DeadLetter.objects.values_list("reason", flat=True)) == sorted(
        ["bad_json", "unknown_version", "schema", "oversize", "unknown_device", "topic"]
    )
    oversize = DeadLetter.objects.get(reason="oversize")
    assert oversize.payload_size > MAX_PAYLOAD_BYTES and len(oversize.payload) == 4096
    assert MetricSample.objects.filter(device=device).count() == 1


def test_birth_and_last_will_mark_the_device_online_then_offline(ingest, mosquitto):
    device = DeviceFactory()
    ingest()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device.device_id, protocol=paho.MQTTv311)
    status_topic = topics.up(device.device_id, "status")
    will = status_payload(
        "offline", reason="connection_lost", agent_version="3.1.0", id=f"lw-{device.device_id}"
    )
    client.will_set(status_topic, will, qos=1, retain=True)
    client.connect(HOST, mosquitto.port, keepalive=5)
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


def test_broker_restart_in_the_middle_loses_nothing(ingest, mosquitto, test_publisher):
    # A plain subscription: Mosquitto 2.0.11 restores it from persistence, a shared one it does not.
    devices = [DeviceFactory() for _ in range(5)]
    ingest(client_id="ingest-restart", shared=False)
    publisher = test_publisher(mosquitto.port, client_id="pub-restart")
    total = 3000
    sent = []
    for i in range(total):
        device = devices[i % len(devices)]
        message_id = f"r-{i}"
        sent.append((device.device_id, message_id))
        publisher.publish(
            topics.up(device.device_id, "telemetry"), telemetry_payload(id=message_id), wait=False
        )
        if i == total // 2:
            mosquitto.restart()
    assert publisher.wait_all(30), "publisher did not get every PUBACK back"
    assert wait_until(lambda: ProcessedMessage.objects.count() >= total, 45), ProcessedMessage.objects.count()
    stored = set(ProcessedMessage.objects.values_list("device_id", "message_id"))
    assert stored == set(sent)
    assert MetricSample.objects.count() == total


def test_stop_finishes_the_current_batch_and_acknowledges_it(ingest, mosquitto, test_publisher):
    device = DeviceFactory()
    thread = ingest(client_id="ingest-stop")
    publisher = test_publisher(mosquitto.port)
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


def test_publish_waits_for_the_broker_and_fails_clearly_without_one(
    broker_settings, mosquitto, test_publisher
):
    received = []
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = lambda c, u, m: received.append(m)
    client.connect(HOST, mosquitto.port)
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
