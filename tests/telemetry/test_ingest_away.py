"""The ingest away while a fleet publishes (issue 12): on the broker configurations Fleet generates,
every message a device had acknowledged reaches the database exactly once when the ingest returns,
and what a broker does drop is counted, never silent.

Measured before the fix on the generated Mosquitto config: the ingest's session away, one device
published 5,000 QoS 1 messages, all PUBACKed; the session came back to 1,000 (Mosquitto's default
max_queued_messages) and the rest were gone without a trace.
"""

from pathlib import Path

import pytest

from devices.models import Device
from fleet.broker import stats as broker_stats
from telemetry.ingest import metrics
from telemetry.models import DeadLetter, MetricSample, ProcessedMessage
from tests.factories import DeviceFactory
from tests.fixtures.mqtt import wait_until
from tests.telemetry.helpers import IngestThread, ingest_settings, publish_as_devices

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEVICES, PER_DEVICE = 1000, 20


def fleet_of(n: int, fleet_pki) -> list:
    template = DeviceFactory()  # one site and hardware model for the whole fleet
    Device.objects.bulk_create(
        Device(
            device_id=f"cam-away-{i:05d}",
            name=f"Away {i}",
            site=template.site,
            hardware_model=template.hardware_model,
        )
        for i in range(n)
    )
    return [fleet_pki.device(f"cam-away-{i:05d}") for i in range(n)]


def run_ingest(client_id: str, **options) -> IngestThread:
    thread = IngestThread(client_id=client_id, **options).start()
    assert wait_until(lambda: metrics.CONNECTED._value.get() == 1, 15), "ingest did not connect"
    return thread


def committed_ids(prefix: str) -> list[tuple[str, str]]:
    return list(
        ProcessedMessage.objects.filter(message_id__startswith=prefix).values_list("device_id", "message_id")
    )


def test_mosquitto_keeps_20000_messages_of_1000_devices_for_an_ingest_that_is_away(
    settings, mosquitto, fleet_pki
):
    ingest_settings(settings, mosquitto)
    identities = fleet_of(DEVICES, fleet_pki)
    run_ingest("ingest-away").stop()  # its persistent session and subscription stay with the broker

    sent = publish_as_devices(mosquitto, identities, PER_DEVICE, prefix="away")
    assert len(sent) == DEVICES * PER_DEVICE, "the broker did not acknowledge every message"

    ingest = run_ingest("ingest-away")
    try:
        assert wait_until(
            lambda: ProcessedMessage.objects.filter(message_id__startswith="away").count() >= len(sent), 120
        )
        committed = committed_ids("away")
        assert len(committed) == len(set(committed)) == len(sent)  # each once
        assert set(committed) == sent
        assert MetricSample.objects.count() == len(sent)
        assert not DeadLetter.objects.exists()
        # The broker counts drops in $SYS every 10 s; the ingest exports the count: none here.
        assert wait_until(lambda: broker_stats.STORE_BYTES._value.get() > 0, 15)
        assert broker_stats.DROPPED._value.get() == 0
    finally:
        ingest.stop()


def test_what_mosquitto_drops_over_its_queue_limit_is_counted_and_exported(
    settings, fleet_pki, mosquitto_factory
):
    """A queue bound must not be a silent one: with a 20 kB bound, what did not fit is in the count."""
    broker = mosquitto_factory(MQTT_BROKER_MAX_QUEUED_BYTES=20_000)
    ingest_settings(settings, broker)
    identities = fleet_of(10, fleet_pki)
    run_ingest("ingest-small", shared=False).stop()
    sent = publish_as_devices(broker, identities, 50, prefix="small")
    assert len(sent) == 500  # all acknowledged: to the devices nothing looks wrong
    ingest = run_ingest("ingest-small", shared=False)
    try:
        assert wait_until(lambda: broker_stats.DROPPED._value.get() > 0, 25), broker.log_tail()
        committed = len(committed_ids("small"))
        assert 0 < committed < 500
        assert broker_stats.DROPPED._value.get() == 500 - committed
        assert "Outgoing messages are being dropped" in broker.log_file.read_text()
    finally:
        ingest.stop()


def test_the_embedded_broker_keeps_20000_messages_of_1000_devices_for_an_ingest_that_is_away(
    settings, embedded_broker, fleet_pki
):
    ingest_settings(settings, embedded_broker)
    settings.MQTT_PROTOCOL = "3.1.1"  # amqtt speaks nothing else
    identities = fleet_of(DEVICES, fleet_pki)
    dropped = broker_stats.DROPPED._value.get()
    run_ingest("fleet-ingest-away").stop()

    sent = publish_as_devices(embedded_broker, identities, PER_DEVICE, prefix="emb")
    assert len(sent) == DEVICES * PER_DEVICE

    ingest = run_ingest("fleet-ingest-away")
    try:
        assert wait_until(
            lambda: ProcessedMessage.objects.filter(message_id__startswith="emb").count() >= len(sent), 180
        )
        committed = committed_ids("emb")
        assert len(committed) == len(set(committed)) == len(sent)
        assert set(committed) == sent
        assert broker_stats.DROPPED._value.get() == dropped
    finally:
        ingest.stop()


def test_what_the_embedded_broker_drops_over_its_queue_limit_is_counted(settings, fleet_pki):
    """amqtt queues for a disconnected session without bound; Fleet's broker holds it to
    max_queued_bytes as Mosquitto does, and counts what it drops (the demo's /metrics shows it)."""
    from fleet.broker.embedded import EmbeddedBroker
    from tests.fixtures.brokers import HOST, EmbeddedBrokerHandle

    broker = EmbeddedBroker(
        HOST, 0, fleet_pki.broker_ca_pem, Path(fleet_pki.server_cert_file).read_bytes(),
        Path(fleet_pki.server_key_file).read_bytes(), lambda serial: False, max_queued_bytes=20_000,
    )  # fmt: skip
    broker.start()
    try:
        handle = EmbeddedBrokerHandle(
            kind="embedded",
            host=HOST,
            port=broker.port,
            server_port=broker.port,
            protocols=(3,),
            fleet_pki=fleet_pki,
        )
        ingest_settings(settings, handle)
        settings.MQTT_PROTOCOL = "3.1.1"
        identities = fleet_of(10, fleet_pki)
        before = broker_stats.DROPPED._value.get()
        run_ingest("fleet-ingest-small").stop()
        sent = publish_as_devices(handle, identities, 50, prefix="esmall")
        assert len(sent) == 500
        ingest = run_ingest("fleet-ingest-small")
        try:
            assert wait_until(
                lambda: len(committed_ids("esmall")) + broker_stats.DROPPED._value.get() - before == 500, 30
            )
            assert 0 < len(committed_ids("esmall")) < 500
        finally:
            ingest.stop()
    finally:
        broker.stop()
