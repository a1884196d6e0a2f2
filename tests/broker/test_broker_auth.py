"""Who gets in: certificates the brokers must refuse, and revocation of a live device."""

import time

import paho.mqtt.client as mqtt
import pytest

from fleet.broker.acl import DEVICES_ROOT


def _refused(mqtt_probe, broker, identity, **kwargs) -> bool:
    probe = mqtt_probe(broker, identity, **kwargs)
    if not probe.start(timeout=3):
        return True
    # TLS 1.3 reports a refused client certificate after the client's handshake is done.
    return probe.wait_disconnected(1.0)


def test_client_without_certificate_is_refused(any_broker, mqtt_probe):
    assert _refused(mqtt_probe, any_broker, None, client_id="cam-nocert")


@pytest.mark.parametrize("kind", ["foreign_device", "expired_device"])
def test_foreign_and_expired_certificates_are_refused(any_broker, fleet_pki, mqtt_probe, kind):
    identity = getattr(fleet_pki, kind)()
    assert _refused(mqtt_probe, any_broker, identity)


def test_revoked_certificate_is_refused(any_broker, fleet_pki, mqtt_probe):
    device = fleet_pki.device()
    probe = mqtt_probe(any_broker, device)
    assert probe.start(), "a fresh certificate must connect"
    probe.stop()
    any_broker.revoke(device)
    assert _refused(mqtt_probe, any_broker, device)


def test_a_fresh_certificate_of_a_revoked_device_connects(any_broker, fleet_pki, mqtt_probe):
    """Revocation is per certificate: re-enrolment gives the device a new one that works."""
    old = fleet_pki.device()
    any_broker.revoke(old)
    new = fleet_pki.device(old.name)
    assert mqtt_probe(any_broker, new).start()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["mqtt311", "mqtt5"])
def test_revoked_device_is_disconnected_within_5s_and_cannot_reconnect(
    any_broker, fleet_pki, mqtt_probe, protocol
):
    if protocol not in any_broker.protocols:
        pytest.skip(f"the {any_broker.kind} broker does not speak this MQTT version")
    device = fleet_pki.device()
    probe = mqtt_probe(any_broker, device, protocol=protocol, reconnect=True)
    assert probe.start()
    connects_before = len(probe.connects)

    t0 = time.monotonic()
    any_broker.revoke(device)
    assert probe.wait_disconnected(5.0), "still connected 5 s after revocation"
    elapsed = probe.disconnects[0][0] - t0
    print(f"\n{any_broker.kind} mqtt{protocol}: revocation to disconnect {elapsed * 1000:.0f} ms")
    assert elapsed < 5.0

    # An attacker holding the key reconnects at once, before any retry delay.
    assert _refused(mqtt_probe, any_broker, device, protocol=protocol)
    # paho retries after 1 s; let it try.
    time.sleep(1.6)
    assert len(probe.connects[connects_before:]) == 0 or all(
        rc.is_failure for rc in probe.connects[connects_before:]
    )
    assert not probe.connected


def test_another_device_cannot_take_over_a_session(any_broker, fleet_pki, mqtt_probe):
    """B connects with A's client id and a persistent session: refused (embedded) or renamed to B (Mosquitto)."""
    a, b = fleet_pki.device(), fleet_pki.device()
    cam_a = mqtt_probe(any_broker, a, clean=False)
    assert cam_a.start()
    cam_a.subscribe(f"{DEVICES_ROOT}/{a.name}/down/#")

    attacker = mqtt_probe(any_broker, b, client_id=a.name, clean=False)
    attacker.start(timeout=2)
    ingest = mqtt_probe(any_broker, fleet_pki.ingest, server_listener=True, client_id="fleet-ingest-takeover")
    assert ingest.start()
    ingest.publish(f"{DEVICES_ROOT}/{a.name}/down/cmd", b"for A")

    assert [m.payload for m in cam_a.received(until_topic=f"{DEVICES_ROOT}/{a.name}/down/cmd")] == [b"for A"]
    assert cam_a.connected and not cam_a.disconnects
    assert attacker.received(timeout=0.3) == []


def test_mosquitto_reloads_the_crl_before_the_kick(mosquitto_broker, fleet_pki):
    """Otherwise the kicked device could reconnect on the old CRL in the gap."""
    device = fleet_pki.device()
    result = mosquitto_broker.revoke(device)
    lines = mosquitto_broker.log_file.read_text().splitlines()
    kick = next(i for i, line in enumerate(lines) if f"createClient | username={device.name}" in line)
    last_reload = max(i for i, line in enumerate(lines) if "Reloading config." in line)
    assert last_reload < kick, mosquitto_broker.log_tail()
    print(
        f"\nCRL published + reload confirmed {result.crl_seconds * 1e3:.1f} ms, kick {result.kick_seconds * 1e3:.1f} ms"
    )


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["mqtt311", "mqtt5"])
def test_a_device_certificate_cannot_use_the_server_listener_to_cut_off_another_device(
    mosquitto_broker, fleet_pki, mqtt_probe, protocol
):
    """Issue 12: the server listener took any fleet-CA certificate, and there the client id is free,
    so a device connecting with another device's client id took over its session. It trusts only
    the server CA now: the device's handshake fails before any client id is read."""
    victim, attacker = fleet_pki.device(), fleet_pki.device()
    cam = mqtt_probe(mosquitto_broker, victim, protocol=protocol)
    assert cam.start()
    for client_id in (victim.name, "fleet-ingest-1", attacker.name):
        assert _refused(
            mqtt_probe,
            mosquitto_broker,
            attacker,
            protocol=protocol,
            server_listener=True,
            client_id=client_id,
        )
    time.sleep(0.3)
    assert cam.connected and not cam.disconnects
    # The server's own identities still get in there, with a client id of their choosing.
    assert mqtt_probe(
        mosquitto_broker, fleet_pki.ingest, server_listener=True, client_id="fleet-ingest-7"
    ).start()
    # ... and not on the device listener, which trusts the device CA alone.
    assert _refused(mqtt_probe, mosquitto_broker, fleet_pki.ingest, client_id=fleet_pki.ingest.name)
