"""The production path: Mosquitto with mTLS and the per-device ACL; ingest and publisher as fleet-ingest."""

import uuid

import paho.mqtt.client as paho
import pytest
from django.db import OperationalError

from fleet import mqtt
from protocol import topics
from telemetry.models import DeadLetter, MetricSample, ProcessedMessage
from tests.factories import DeviceFactory
from tests.fixtures.mqtt import wait_until
from tests.telemetry.helpers import IngestThread, ingest_settings, telemetry_payload

pytestmark = [pytest.mark.mosquitto, pytest.mark.django_db(transaction=True)]


def _settled(predicate):
    def attempt():
        try:
            return predicate()
        except OperationalError:  # SQLite shared-cache lock while the ingest thread writes
            return False

    return attempt


@pytest.fixture
def tls_settings(settings, mosquitto_broker):
    ingest_settings(settings, mosquitto_broker)
    yield settings
    mqtt.close_publisher()


def test_device_publishes_over_mtls_ingest_commits_and_server_publishes_back(
    tls_settings, mosquitto_broker, fleet_pki, mqtt_probe
):
    device, other = DeviceFactory(), DeviceFactory()
    ingest = IngestThread(client_id=f"ingest-tls-{uuid.uuid4().hex[:6]}").start()
    try:
        probe = mqtt_probe(mosquitto_broker, fleet_pki.device(device.device_id), protocol=paho.MQTTv311)
        assert probe.start()
        probe.subscribe(topics.device_subscription(device.device_id))
        # Until the ingest's subscription is in place, keep sending (each with a new id).
        landed = _settled(lambda: ProcessedMessage.objects.filter(device_id=device.device_id).exists())
        for attempt in range(40):
            probe.publish(topics.up(device.device_id, "telemetry"), telemetry_payload(id=f"real-{attempt}"))
            if wait_until(landed, 0.5):
                break
        assert landed()
        # Forged: a device writing on another device's topic is dropped by the broker's ACL.
        probe.publish(topics.up(other.device_id, "telemetry"), telemetry_payload(id="forged"))
        probe.publish(topics.up(device.device_id, "telemetry"), telemetry_payload(id="last"))
        assert wait_until(_settled(lambda: ProcessedMessage.objects.filter(message_id="last").exists()), 10)
        assert not ProcessedMessage.objects.filter(device_id=other.device_id).exists()
        assert not DeadLetter.objects.filter(message_id="forged").exists()
        assert MetricSample.objects.filter(device=device).count() == ProcessedMessage.objects.count()

        mqtt.publish(topics.down(device.device_id, "cmd"), b'{"hello": 1}')
        got = probe.received(until_topic=topics.down(device.device_id, "cmd"), timeout=5)
        assert [m.payload for m in got] == [b'{"hello": 1}']
    finally:
        ingest.stop()
