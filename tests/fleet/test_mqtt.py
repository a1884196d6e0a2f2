"""fleet.mqtt's lean receive path against real Mosquitto (the generated config): what paho would have
delivered, for every PUBLISH form a broker sends, and paho's own handling for what it does not expect."""

import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet import mqtt
from fleet.mqtt import _LeanClient
from tests.fixtures.mqtt import wait_until
from tests.telemetry.helpers import ingest_settings

pytestmark = [pytest.mark.mosquitto, pytest.mark.django_db]


@pytest.fixture
def received(settings, mosquitto):
    ingest_settings(settings, mosquitto)
    got: list[tuple[str, bytes, int, int]] = []
    subscribed = threading.Event()

    def on_connect(conn, session_present):
        conn.client.on_subscribe = lambda *a: subscribed.set()
        conn.client.subscribe("fleet/v1/devices/#", qos=1)

    conn = mqtt.connect(
        client_id="fleet-ingest-lean",
        on_connect=on_connect,
        on_publish=lambda c, topic, payload, mid, qos: got.append((topic.decode(), payload, mid, qos)),
    )
    assert isinstance(conn.client, _LeanClient) and subscribed.wait(5)
    yield got
    conn.close()


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311], ids=["mqtt5", "mqtt311"])
def test_every_publish_form_arrives_whole(received, mosquitto, fleet_pki, protocol):
    device = fleet_pki.device()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device.name, protocol=protocol)
    client.tls_set(ca_certs=fleet_pki.ca_file, certfile=device.cert_file, keyfile=device.key_file)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    topic = f"fleet/v1/devices/{device.name}/up/telemetry"
    sent = []
    for i, (qos, size) in enumerate([(1, 10), (0, 3), (1, 0), (1, 200_000)]):
        props = None
        if protocol == paho.MQTTv5:  # properties of every length the lean path must skip
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("k" * (i * 90), "v")]
            props.MessageExpiryInterval = 60
        payload = bytes([65 + i]) * size
        client.publish(topic, payload, qos=qos, properties=props).wait_for_publish(5)
        sent.append((payload, qos))
    try:
        assert wait_until(lambda: len(received) == len(sent), 5)
        assert [(t, p, q) for t, p, _, q in received] == [(topic, p, q) for p, q in sent]
        assert all(mid > 0 for _, _, mid, q in received if q == 1)
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_publish_shorter_than_its_lengths_goes_to_paho_which_refuses_it():
    client = _LeanClient(CallbackAPIVersion.VERSION2, client_id="x", protocol=paho.MQTTv5)
    client.on_publish_raw = lambda *a: pytest.fail("the lean path must not deliver a broken packet")
    for packet in (b"\x00\x10fleet/v1", b"\x00\x03abc\x00\x01\xff\xff\xff\xff\x7f"):
        client._in_packet = {"command": 0x32, "packet": packet}
        with pytest.raises(Exception) as exc:
            client._handle_publish()
        assert type(exc.value).__name__ in ("MalformedPacket", "error", "ValueError")
