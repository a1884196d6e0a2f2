"""upload_clip end to end through the embedded broker: a kept clip goes up only when an operator asks."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from agent_helpers import agent_config, make_identity, next_message, running, wait_for

from protocol import topics
from protocol.down import BandwidthPolicy, DeviceConfig
from protocol.messages import Command, Config, MediaComplete, MediaGranted, MediaRequest, encode, make
from tests.edge.uplink.uplink_part_server import PartServer

HOST = "127.0.0.1"
CLIP = b"\x00\x00\x00\x18ftypmp42" + os.urandom(20_000)


@pytest.fixture
def device(embedded_broker, fleet_pki, mqtt_probe, tmp_path):
    ident = make_identity(fleet_pki, tmp_path, host=HOST, port=embedded_broker.port)
    server = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert server.start(), server.failure
    server.subscribe(f"{topics.ROOT}/{ident.device_id}/up/#")
    return ident, server


@pytest.fixture
def parts():
    s = PartServer()
    yield s
    s.close()


def _acks(server, command_id: str, n: int):
    return [next_message(server, kind="ack", where=lambda m: m.command_id == command_id)[1] for _ in range(n)]


def test_upload_clip_sends_the_kept_clip_even_on_a_metered_link(device, parts, tmp_path):
    ident, server = device
    with running(agent_config(tmp_path)) as agent:
        next_message(server, kind="status")
        # A metered link holds the clip class: clips go only when asked for.
        metered = make(
            Config, revision=3, config=DeviceConfig(bandwidth=BandwidthPolicy(max_kbps=512, metered=True))
        )
        server.publish(topics.down(ident.device_id, "config"), encode(metered), retain=True)
        next_message(server, kind="status", where=lambda m: m.config_revision == 3)
        assert "clip" not in agent.shaper.allowed_classes()
        agent.media.keep("ev-7", "clip", CLIP, "video/mp4")

        cmd = make(
            Command,
            command_id="up-1",
            name="upload_clip",
            args={"event_id": "ev-7"},
            expires=time.time() + 60,
        )
        server.publish(topics.down(ident.device_id, "cmd"), encode(cmd))
        acked, done = _acks(server, "up-1", 2)
        assert (acked.status, done.status) == ("acknowledged", "succeeded")
        request_id = done.result["request_id"]
        assert done.result == {
            "event_id": "ev-7",
            "request_id": request_id,
            "sha256": hashlib.sha256(CLIP).hexdigest(),
            "size": len(CLIP),
        }
        _, request, _ = next_message(server, kind="media", where=lambda m: isinstance(m, MediaRequest))
        assert (request.request_id, request.event_id, request.kind, request.size) == (
            request_id,
            "ev-7",
            "clip",
            len(CLIP),
        )
        assert request.sha256 == done.result["sha256"] and request.content_type == "video/mp4"

        # The server grants it; the agent PUTs the parts and completes the upload.
        grant = make(
            MediaGranted,
            **{**parts.grant("u-7", len(CLIP), 8192, time.time() + 600), "request_id": request_id},
        )
        server.publish(topics.down(ident.device_id, "media"), encode(grant))
        _, complete, _ = next_message(server, kind="media", where=lambda m: isinstance(m, MediaComplete))
        assert complete.request_id == request_id and [p.number for p in complete.parts] == [1, 2, 3]
        assert parts.assembled("u-7") == CLIP
        assert wait_for(lambda: agent.media.find(request_id) is None, 5)
        assert agent.media.kept("ev-7", "clip").read_bytes() == CLIP  # still there to ask again

        missing = make(
            Command,
            command_id="up-2",
            name="upload_clip",
            args={"event_id": "ev-404"},
            expires=time.time() + 60,
        )
        server.publish(topics.down(ident.device_id, "cmd"), encode(missing))
        acked, failed = _acks(server, "up-2", 2)
        assert (acked.status, failed.status) == ("acknowledged", "failed")
        assert "no clip kept for event ev-404" in failed.detail
