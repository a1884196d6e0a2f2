"""Per-device topic isolation on both brokers, with real paho clients and real certificates."""

import uuid

import paho.mqtt.client as mqtt
import pytest

from fleet.broker.acl import DEVICES_ROOT

PROTOCOLS = [pytest.param(mqtt.MQTTv311, id="mqtt311"), pytest.param(mqtt.MQTTv5, id="mqtt5")]


def _needs(broker, protocol):
    if protocol not in broker.protocols:
        pytest.skip(f"the {broker.kind} broker does not speak this MQTT version")


def _connect(mqtt_probe, broker, identity, protocol, **kwargs):
    probe = mqtt_probe(broker, identity, protocol=protocol, **kwargs)
    assert probe.start(), f"{identity.name} could not connect: {probe.connects} {probe.failure}"
    return probe


def up(device_id, kind="telemetry"):
    return f"{DEVICES_ROOT}/{device_id}/up/{kind}"


def down(device_id, kind="cmd"):
    return f"{DEVICES_ROOT}/{device_id}/down/{kind}"


@pytest.fixture
def pair(any_broker, fleet_pki):
    return fleet_pki.device(), fleet_pki.device()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_device_up_reaches_ingest_and_ingest_down_reaches_device(any_broker, fleet_pki, mqtt_probe, protocol):
    _needs(any_broker, protocol)
    device = fleet_pki.device()
    ingest = _connect(
        mqtt_probe,
        any_broker,
        fleet_pki.ingest,
        protocol,
        server_listener=True,
        client_id=f"fleet-ingest-{uuid.uuid4().hex[:6]}",
    )
    assert ingest.subscribe(f"{DEVICES_ROOT}/#")[0].value < 0x80
    cam = _connect(mqtt_probe, any_broker, device, protocol)
    assert cam.subscribe(f"{DEVICES_ROOT}/{device.name}/down/#")[0].value < 0x80

    cam.publish(up(device.name), b'{"v":1}')
    got = ingest.received(until_topic=up(device.name))
    assert [m.payload for m in got if m.topic == up(device.name)] == [b'{"v":1}']

    ingest.publish(down(device.name), b'{"v":1,"cmd":"reboot"}')
    got = cam.received(until_topic=down(device.name))
    assert [m.payload for m in got if m.topic == down(device.name)] == [b'{"v":1,"cmd":"reboot"}']


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_device_cannot_publish_into_another_devices_topics(any_broker, fleet_pki, mqtt_probe, protocol, pair):
    _needs(any_broker, protocol)
    a, b = pair
    ingest = _connect(
        mqtt_probe,
        any_broker,
        fleet_pki.ingest,
        protocol,
        server_listener=True,
        client_id=f"fleet-ingest-{uuid.uuid4().hex[:6]}",
    )
    ingest.subscribe(f"{DEVICES_ROOT}/#")
    cam_b = _connect(mqtt_probe, any_broker, b, protocol)
    cam_b.subscribe(f"{DEVICES_ROOT}/{b.name}/down/#")
    cam_a = _connect(mqtt_probe, any_broker, a, protocol)

    cam_a.publish(up(b.name), b"forged")  # as B
    cam_a.publish(down(b.name), b"forged command")  # a command to B
    cam_a.publish(f"{DEVICES_ROOT}/{a.name}/other", b"outside up/")
    cam_a.publish(up(a.name, "control"), b"control")  # ordered after the refused ones

    got = ingest.received(until_topic=up(a.name, "control"))
    # Retained messages other tests left on the shared broker arrive first: only live ones count.
    assert [m.topic for m in got if not m.retain] == [up(a.name, "control")]
    assert [m for m in cam_b.received(timeout=0.3) if not m.retain] == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_device_reads_nothing_of_another_device(any_broker, fleet_pki, mqtt_probe, protocol, pair):
    _needs(any_broker, protocol)
    a, b = pair
    ingest = _connect(
        mqtt_probe,
        any_broker,
        fleet_pki.ingest,
        protocol,
        server_listener=True,
        client_id=f"fleet-ingest-{uuid.uuid4().hex[:6]}",
    )
    cam_b = _connect(mqtt_probe, any_broker, b, protocol)
    cam_a = _connect(mqtt_probe, any_broker, a, protocol)
    for topic_filter in (f"{DEVICES_ROOT}/{b.name}/down/#", f"{DEVICES_ROOT}/+/down/#", "fleet/#", "#"):
        cam_a.subscribe(topic_filter)  # Mosquitto grants the SUBACK and filters deliveries; amqtt refuses
    cam_a.subscribe(f"{DEVICES_ROOT}/{a.name}/down/#")

    ingest.publish(down(b.name), b"for B only")
    cam_b.publish(up(b.name), b"B telemetry")
    ingest.publish(down(a.name, "control"), b"control")

    got = cam_a.received(until_topic=down(a.name, "control"))
    assert [m.topic for m in got] == [down(a.name, "control")]


def test_retained_config_of_another_device_is_not_replayed(any_broker, fleet_pki, mqtt_probe, pair):
    a, b = pair
    ingest = _connect(
        mqtt_probe,
        any_broker,
        fleet_pki.ingest,
        mqtt.MQTTv311,
        server_listener=True,
        client_id=f"fleet-ingest-{uuid.uuid4().hex[:6]}",
    )
    ingest.subscribe(f"{DEVICES_ROOT}/#")  # a broker-wide filter that matches B's config
    ingest.publish(down(b.name, "config"), b"B config", retain=True)
    ingest.publish(down(a.name, "config"), b"A config", retain=True)

    cam_a = _connect(mqtt_probe, any_broker, a, mqtt.MQTTv311)
    cam_a.subscribe(f"{DEVICES_ROOT}/{a.name}/down/#")
    cam_a.subscribe("#")
    got = cam_a.received(timeout=1.0)
    assert {m.payload for m in got} == {b"A config"}
