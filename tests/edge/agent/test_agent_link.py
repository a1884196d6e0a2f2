"""The agent's MQTT link against the real brokers: birth/will, reconnect, offline queueing order."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from agent_helpers import agent_config, make_identity, next_message, running, wait_for
from agent_proxy import TcpProxy

from edge.uplink.classes import UPLINK_CLASSES
from protocol import topics
from protocol.messages import Events, MediaRequest, Telemetry

HOST = "127.0.0.1"


@pytest.fixture
def proxy(any_broker):
    p = TcpProxy((any_broker.host, any_broker.port))
    yield p
    p.close()


def _server(mqtt_probe, broker, device_id: str, *, kind: str = "#"):
    probe = mqtt_probe(broker, broker.fleet_pki.ingest, server_listener=True)
    assert probe.start(), probe.failure
    sub = f"{topics.ROOT}/{device_id}/up/{kind}"
    assert probe.subscribe(sub) == [1] or probe.protocol == mqtt.MQTTv5
    return probe


def test_birth_is_retained_and_will_says_connection_lost(any_broker, fleet_pki, mqtt_probe, proxy, tmp_path):
    ident = make_identity(fleet_pki, tmp_path, host=HOST, port=proxy.port)
    server = _server(mqtt_probe, any_broker, ident.device_id, kind="status")
    with running(agent_config(tmp_path)) as agent:
        _, birth, _ = next_message(server, kind="status")
        assert birth.state == "online" and birth.agent_version and birth.config_revision == 0

        server.stop()  # one connection per server identity: the late subscriber takes over
        server = _server(mqtt_probe, any_broker, ident.device_id, kind="status")
        _, retained, raw = next_message(server, kind="status")
        assert raw.retain and retained.state == "online"

        proxy.set_up(False)  # the link dies without a DISCONNECT: the broker sends the will
        _, will, _ = next_message(server, kind="status", timeout=15)
        assert (will.state, will.reason) == ("offline", "connection_lost")
        assert wait_for(lambda: not agent.link.connected, 5)

        proxy.set_up(True)
        _, again, _ = next_message(server, kind="status", timeout=15)
        assert again.state == "online"
        assert agent.link.connects == 2


def test_mqtt5_session_with_mosquitto(mosquitto_broker, fleet_pki, mqtt_probe, tmp_path):
    ident = make_identity(fleet_pki, tmp_path, host=HOST, port=mosquitto_broker.port)
    server = _server(mqtt_probe, mosquitto_broker, ident.device_id, kind="status")
    with running(agent_config(tmp_path, mqtt_protocol="5")) as agent:
        _, birth, _ = next_message(server, kind="status")
        assert birth.state == "online"
        assert wait_for(lambda: agent.link.connected)
    # A clean stop says why it went away.
    _, bye, _ = next_message(server, kind="status")
    assert (bye.state, bye.reason) == ("offline", "shutdown")


def test_reconnects_after_the_broker_drops_the_connection(embedded_broker, fleet_pki, mqtt_probe, tmp_path):
    ident = make_identity(fleet_pki, tmp_path, host=HOST, port=embedded_broker.port)
    server = _server(mqtt_probe, embedded_broker, ident.device_id, kind="status")
    with running(agent_config(tmp_path)) as agent:
        assert next_message(server, kind="status")[1].state == "online"
        embedded_broker.broker.kick(ident.device_id)  # the broker closes the session
        states = [next_message(server, kind="status", timeout=15)[1].state for _ in range(2)]
        assert states == ["offline", "online"]
        assert wait_for(lambda: agent.link.connects == 2 and agent.link.connected, 10)


def test_offline_items_arrive_highest_priority_first(any_broker, fleet_pki, mqtt_probe, proxy, tmp_path):
    ident = make_identity(fleet_pki, tmp_path, host=HOST, port=proxy.port)
    server = _server(mqtt_probe, any_broker, ident.device_id)
    proxy.set_up(False)
    with running(agent_config(tmp_path)) as agent:
        assert agent.ready.wait(5)
        out = agent.outbox
        sample = {"ts": 1.0, "cpu_pct": 10.0, "mem_pct": 20.0}
        event = {"event_id": "e1", "camera": "cam0", "bbox": [0.1, 0.1, 0.2, 0.2], "start": 1.0, "score": 0.9}
        media = {"event_id": "e1", "size": 10, "sha256": "0" * 64, "content_type": "video/mp4"}
        # Lowest priority first, so arrival order cannot be queue order by accident.
        for i in range(3):
            out.media_request(request_id=f"clip-{i}", kind="clip", **media)
            out.telemetry([sample])
            out.media_request(request_id=f"snap-{i}", kind="snapshot", **media)
            out.events([{**event, "event_id": f"ev-{i}", "label": "car", "end": 2.0}])
            out.events([{**event, "event_id": f"al-{i}", "label": "person"}])
        assert len(agent.queue) == 15
        assert not agent.link.connected
        proxy.set_up(True)
        got = []
        while len(got) < 15:
            kind, msg, _ = next_message(server, timeout=15)
            if kind == "status":
                continue
            if isinstance(msg, Events):
                e = msg.events[0]
                got.append("alert" if e.end is None else "event")
            elif isinstance(msg, MediaRequest):
                got.append("thumbnail" if msg.kind == "snapshot" else "clip")
            elif isinstance(msg, Telemetry):
                got.append("telemetry")
        ranks = [UPLINK_CLASSES.index(c) for c in got]
        assert ranks == sorted(ranks), got
        assert got[:3] == ["alert"] * 3
        assert wait_for(lambda: len(agent.queue) == 0, 5)
