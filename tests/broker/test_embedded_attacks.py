"""Attacks on the holes amqtt 0.12 has out of the box (FACTS.md), each closed by fleet.broker.embedded."""

import asyncio
import socket
import ssl
import struct
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fleet.broker.acl import DEVICES_ROOT
from fleet.broker.embedded import EmbeddedBroker
from tests.fixtures.brokers import EmbeddedBrokerHandle


def _str(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def raw_connect(broker, identity, *, client_id, keepalive=30, will=None, clean=True):
    """A hand-made MQTT 3.1.1 CONNECT over TLS; returns (socket, CONNACK return code or None if cut)."""
    context = ssl.create_default_context(cafile=broker.fleet_pki.ca_file)
    if identity is not None:
        context.load_cert_chain(identity.cert_file, identity.key_file)
    sock = context.wrap_socket(
        socket.create_connection((broker.host, broker.port), timeout=3), server_hostname="localhost"
    )
    flags = (0x02 if clean else 0) | ((0x04 | 0x08) if will else 0)  # will at QoS 1
    payload = _str(client_id) + (_str(will[0]) + _str(will[1]) if will else b"")
    variable = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = variable + payload
    sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
    try:
        connack = sock.recv(4)
    except (OSError, ssl.SSLError):
        return sock, None
    return sock, (connack[3] if len(connack) == 4 and connack[0] == 0x20 else None)


def _closed_by_peer(sock, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except (OSError, ssl.SSLError):
        return True


def test_device_will_into_another_devices_down_is_refused(embedded_broker, fleet_pki):
    a, b = fleet_pki.device(), fleet_pki.device()
    sock, rc = raw_connect(
        embedded_broker, b, client_id=b.name, will=(f"{DEVICES_ROOT}/{a.name}/down/cmd", b'{"cmd":"wipe"}')
    )
    sock.close()
    assert rc == 5  # not authorised


def test_device_will_on_its_own_status_is_delivered(embedded_broker, fleet_pki, mqtt_probe):
    device = fleet_pki.device()
    ingest = mqtt_probe(embedded_broker, fleet_pki.ingest, client_id="fleet-ingest-will")
    assert ingest.start()
    ingest.subscribe(f"{DEVICES_ROOT}/{device.name}/up/#")
    status = f"{DEVICES_ROOT}/{device.name}/up/status"
    sock, rc = raw_connect(embedded_broker, device, client_id=device.name, will=(status, b"offline"))
    assert rc == 0
    sock.close()  # no DISCONNECT: an abnormal end, so the will goes out
    assert [m.payload for m in ingest.received(until_topic=status)] == [b"offline"]


def test_certless_client_cannot_take_over_a_persistent_session(embedded_broker, fleet_pki, mqtt_probe):
    device = fleet_pki.device()
    cam = mqtt_probe(embedded_broker, device, clean=False)
    assert cam.start()
    cam.subscribe(f"{DEVICES_ROOT}/{device.name}/down/#")
    cam.stop()  # offline; the broker keeps the session and queues QoS 1 for it
    ingest = mqtt_probe(embedded_broker, fleet_pki.ingest, client_id="fleet-ingest-queue")
    assert ingest.start()
    ingest.publish(f"{DEVICES_ROOT}/{device.name}/down/ota", b"manifest")

    thief = mqtt_probe(embedded_broker, None, client_id=device.name, clean=False)
    assert not thief.start(timeout=2)
    assert thief.received(timeout=0.3) == []

    cam = mqtt_probe(embedded_broker, device, clean=False)
    assert cam.start()
    assert [m.payload for m in cam.received(until_topic=f"{DEVICES_ROOT}/{device.name}/down/ota")] == [
        b"manifest"
    ]


@pytest.mark.parametrize("thief", ["other_device", "ingest"])
def test_refused_connect_with_a_device_client_id_does_not_cut_the_device_off(
    embedded_broker, fleet_pki, mqtt_probe, thief
):
    device = fleet_pki.device()
    cam = mqtt_probe(embedded_broker, device)
    assert cam.start()
    identity = fleet_pki.device() if thief == "other_device" else fleet_pki.ingest
    sock, rc = raw_connect(embedded_broker, identity, client_id=device.name, clean=False)
    sock.close()
    assert rc == 5
    time.sleep(0.2)
    assert cam.connected and not cam.disconnects


def test_admin_identity_has_no_device_topics(embedded_broker, fleet_pki, mqtt_probe):
    admin = mqtt_probe(embedded_broker, fleet_pki.admin, client_id="fleet-admin-1")
    assert admin.start()
    assert admin.subscribe(f"{DEVICES_ROOT}/#")[0].value == 0x80


def test_silent_client_is_dropped_after_one_and_a_half_keepalives(embedded_broker, fleet_pki):
    device = fleet_pki.device()
    sock, rc = raw_connect(embedded_broker, device, client_id=device.name, keepalive=1)
    assert rc == 0
    t0 = time.monotonic()
    assert _closed_by_peer(sock, timeout=4.0), "the broker kept a silent client past its keep-alive"
    elapsed = time.monotonic() - t0
    sock.close()
    assert 1.0 <= elapsed < 3.5, elapsed


def test_second_connection_with_the_same_client_id_closes_the_first(any_broker, fleet_pki, mqtt_probe):
    """The older link must not linger out of reach of a kick [MQTT-3.1.4-2]."""
    device = fleet_pki.device()
    first = mqtt_probe(any_broker, device)
    assert first.start()
    second = mqtt_probe(any_broker, device)
    assert second.start()
    assert first.wait_disconnected(3.0)
    any_broker.revoke(device)
    assert second.wait_disconnected(5.0)


def test_mqtt5_client_is_refused_by_the_embedded_broker(embedded_broker, fleet_pki, mqtt_probe):
    probe = mqtt_probe(embedded_broker, fleet_pki.device(), protocol=mqtt.MQTTv5)
    assert not probe.start(timeout=3)


def test_embedded_broker_runs_on_an_existing_loop_and_fails_closed_on_revocation_errors(
    fleet_pki, mqtt_probe
):
    """The asyncio API, and an is_revoked that raises (database down) refuses instead of admitting."""
    good, unlucky = fleet_pki.device(), fleet_pki.device()

    def is_revoked(serial: int) -> bool:
        if serial == unlucky.serial:
            raise ConnectionError("revocation store unreachable")
        return False

    async def scenario() -> tuple[bool, bool, int]:
        broker = EmbeddedBroker(
            "127.0.0.1",
            0,
            fleet_pki.broker_ca_pem,
            Path(fleet_pki.server_cert_file).read_bytes(),
            Path(fleet_pki.server_key_file).read_bytes(),
            is_revoked,
        )
        await broker.start_async()
        try:
            handle = EmbeddedBrokerHandle(
                kind="embedded",
                host="127.0.0.1",
                port=broker.port,
                server_port=broker.port,
                protocols=(mqtt.MQTTv311,),
                fleet_pki=fleet_pki,
            )
            ok = await asyncio.to_thread(mqtt_probe(handle, good).start)
            refused = not await asyncio.to_thread(mqtt_probe(handle, unlucky).start, 3)
            kicked = await broker.kick_async(good.name)
            return ok, refused, kicked
        finally:
            await broker.stop_async()

    assert asyncio.run(scenario()) == (True, True, 1)


def test_amqtt_is_the_version_whose_internals_fleet_broker_mirrors():
    """FleetBroker overrides private amqtt methods; a new amqtt needs those overrides re-read."""
    import amqtt

    assert amqtt.__version__ == "0.12.1"


def test_no_message_is_lost_while_many_devices_subscribe(embedded_broker, fleet_pki, mqtt_probe):
    """amqtt iterates its subscription table across awaits; new subscriptions during a broadcast
    used to kill it (RuntimeError) and lose the message. A connect storm while one device publishes."""
    import threading

    publisher = fleet_pki.device()
    ingest = mqtt_probe(embedded_broker, fleet_pki.ingest, client_id="fleet-ingest-storm")
    assert ingest.start()
    ingest.subscribe(f"{DEVICES_ROOT}/+/up/#")
    cam = mqtt_probe(embedded_broker, publisher)
    assert cam.start()
    storm = [fleet_pki.device() for _ in range(160)]

    def connect_all(devices) -> None:
        for device in devices:
            probe = mqtt_probe(embedded_broker, device)
            if probe.start():
                probe.subscribe(f"{DEVICES_ROOT}/{device.name}/down/#")

    threads = [threading.Thread(target=connect_all, args=(storm[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    topic = f"{DEVICES_ROOT}/{publisher.name}/up/telemetry"
    sent = 0
    while any(t.is_alive() for t in threads) or sent < 100:
        cam.client.publish(topic, str(sent).encode(), qos=1)
        sent += 1
        time.sleep(0.005)
    for thread in threads:
        thread.join()
    cam.publish(f"{DEVICES_ROOT}/{publisher.name}/up/control", b"end")
    got = ingest.received(until_topic=f"{DEVICES_ROOT}/{publisher.name}/up/control", timeout=20)
    payloads = {m.payload for m in got if m.topic == topic}
    assert payloads == {str(i).encode() for i in range(sent)}, f"{sent - len(payloads)} of {sent} lost"


def test_subscription_table_can_change_while_a_broadcast_walks_it():
    """The race above in miniature: amqtt's broadcast awaits between entries of the table it walks."""
    from fleet.broker.amqtt_fleet import _SnapshotDict

    table = _SnapshotDict({"a/#": [], "b/#": []})
    walked = []
    for key, _ in table.items():
        walked.append(key)
        table[f"{key}-new"] = []  # a device subscribing meanwhile
    for key in table:
        table.pop(key)  # _del_all_subscriptions removes while walking
    assert walked == ["a/#", "b/#"] and table == {}
