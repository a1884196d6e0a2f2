"""upload_clip end to end through the embedded broker: a kept clip goes up only when an operator asks."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from agent_helpers import acks, agent_config, next_message, running, send_command, wait_for

from protocol import topics
from protocol.down import BandwidthPolicy, DeviceConfig
from protocol.messages import Config, MediaComplete, MediaGranted, MediaRequest, encode, make
from tests.edge.uplink.uplink_part_server import PartServer

CLIP = b"\x00\x00\x00\x18ftypmp42" + os.urandom(20_000)


@pytest.fixture
def parts():
    s = PartServer()
    yield s
    s.close()


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

        send_command(server, ident.device_id, "up-1", "upload_clip", args={"event_id": "ev-7"})
        acked, done = acks(server, "up-1", 2)
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

        send_command(server, ident.device_id, "up-2", "upload_clip", args={"event_id": "ev-404"})
        acked, failed = acks(server, "up-2", 2)
        assert (acked.status, failed.status) == ("acknowledged", "failed")
        assert "no clip kept for event ev-404" in failed.detail
