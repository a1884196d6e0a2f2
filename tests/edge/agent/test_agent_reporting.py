"""What the agent queues for finished events: inline thumbnails or upload grants, kept or uploaded clips."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from edge.agent.media_store import MediaStore
from edge.agent.outbox import MAX_EVENTS_BYTES, Outbox
from edge.agent.reporting import EventReporter, thumbnails_inline
from edge.uplink import BandwidthPolicy, Shaper, UplinkDB, UplinkQueue
from edge.vision.events import DetectionEvent
from protocol.images import INLINE_THUMBNAIL_MAX_BYTES
from protocol.messages import decode_up

DEVICE = "cam-0042"


def webp(side: int = 64, noise: bool = False) -> bytes:
    rng = np.random.default_rng(side)
    img = (
        rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        if noise
        else np.full((side, side, 3), 90, np.uint8)
    )
    cv2.rectangle(img, (side // 4, side // 8), (side // 2, side - 4), (40, 40, 220), -1)
    ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 65 if not noise else 100])
    assert ok
    return buf.tobytes()


def finished(
    event_id: str, *, thumbnail: bytes | None = None, clip: bytes | None = None, upload: bool = False
):
    return DetectionEvent(
        event_id=event_id,
        camera="cam0",
        label="person",
        score=0.9,
        bbox=(0.1, 0.2, 0.1, 0.3),
        start=1_700_000_000.0,
        end=1_700_000_004.0,
        zone=None,
        track_id=1,
        thumbnail=thumbnail if thumbnail is not None else webp(),
        clip=clip,
        clip_upload=upload,
    )


CLIP = b"\x00\x00\x00\x18ftypmp42" + os.urandom(5000)


class Device:
    """The agent's queue, shaper, outbox, media store and reporter, without the network."""

    def __init__(self, tmp_path, policy: BandwidthPolicy | None = None) -> None:
        self.db = UplinkDB(tmp_path / "uplink.db")
        self.queue = UplinkQueue(self.db, quota_bytes=10**7, min_free_bytes=0)
        self.shaper = Shaper(self.db, policy=policy)
        self.queue.set_priority(self.shaper.policy.class_priority)
        self.outbox = Outbox(queue=self.queue, device_id=DEVICE, alert_labels=("person",))
        self.media = MediaStore(tmp_path / "media")
        self.reporter = EventReporter(outbox=self.outbox, media=self.media, policy=lambda: self.shaper.policy)

    def drain(self) -> list[tuple[str, str, dict]]:
        """(class, kind, body) of every queued item, in send order, acked as the drainer does."""
        out = []
        while (item := self.queue.peek_next()) is not None:
            kind = item.topic.rsplit("/", 1)[1]
            decode_up(kind, item.payload)  # every item is a valid message
            out.append((item.cls, kind, json.loads(item.payload)))
            self.queue.ack(item.id)
        return out


@pytest.fixture
def device(tmp_path):
    d = Device(tmp_path)
    yield d
    d.db.close()


def test_default_policy_sends_the_thumbnail_inline_and_keeps_the_clip(device):
    ev = finished("ev-1", clip=CLIP)
    device.reporter.report([ev])
    ((cls, kind, body),) = device.drain()
    (report,) = body["events"]
    assert (cls, kind) == ("event", "events") and "media" not in report
    assert base64.b64decode(report["thumbnail"]) == ev.thumbnail
    # The inline bytes are counted as sent thumbnails; the rest of the report as event bytes.
    sent = device.queue.sent_bytes_by_class()
    assert sent["thumbnail"] == len(report["thumbnail"]) and 0 < sent["event"] < 400
    # No upload waits; the clip is kept on the device for an operator to ask for.
    assert device.media.find("ev-1") is None and device.media.kept("ev-1", "clip").read_bytes() == CLIP


@pytest.mark.parametrize(
    "policy",
    [
        {"classes_allowed": ["alert", "event", "telemetry"]},  # thumbnails not sent at all
        {"class_priority": ["alert", "event", "telemetry", "thumbnail"]},  # telemetry goes before them
        {"class_priority": ["thumbnail", "alert", "event"]},  # thumbnails before alerts
    ],
)
def test_a_policy_that_does_not_send_thumbnails_right_behind_events_keeps_the_grant_path(tmp_path, policy):
    device = Device(tmp_path, BandwidthPolicy.from_config({"max_kbps": 512, **policy}))
    assert not thumbnails_inline(device.shaper.policy)
    ev = finished("ev-2")
    device.reporter.report([ev])
    items = device.db.query("SELECT cls, topic, payload, inline_bytes FROM uplink_item ORDER BY id")
    (ev_cls, _, report_payload, inline), (req_cls, req_topic, req_payload, _) = items
    report = json.loads(report_payload)["events"][0]
    assert ev_cls == "event" and inline == 0 and "thumbnail" not in report
    assert report["media"] == [{"kind": "snapshot", "sha256": hashlib.sha256(ev.thumbnail).hexdigest()}]
    request = json.loads(req_payload)
    assert req_cls == "thumbnail" and req_topic.endswith("/up/media") and request["op"] == "request"
    assert request["content_type"] == "image/webp" and request["size"] == len(ev.thumbnail)
    assert device.media.find(request["request_id"]).path.read_bytes() == ev.thumbnail
    if "classes_allowed" in policy:  # held on the device while the policy leaves thumbnails out
        assert "thumbnail" not in device.shaper.allowed_classes()


def test_a_thumbnail_over_the_inline_cap_keeps_the_grant_path(device):
    big = webp(160, noise=True)
    assert len(big) > INLINE_THUMBNAIL_MAX_BYTES
    small = finished("ev-s")
    device.reporter.report([finished("ev-b", thumbnail=big), small])
    (_, _, events), (cls, kind, request) = device.drain()
    by_id = {e["event_id"]: e for e in events["events"]}
    assert "thumbnail" not in by_id["ev-b"] and by_id["ev-b"]["media"][0]["kind"] == "snapshot"
    assert base64.b64decode(by_id["ev-s"]["thumbnail"]) == small.thumbnail
    assert (cls, kind, request["event_id"], request["size"]) == ("thumbnail", "media", "ev-b", len(big))


def test_clips_of_clip_labels_are_uploaded_at_once(device):
    device.reporter.report([finished("ev-3", clip=CLIP, upload=True)])
    (_, _, events), (cls, kind, request) = device.drain()
    assert events["events"][0]["media"] == [{"kind": "clip", "sha256": hashlib.sha256(CLIP).hexdigest()}]
    assert (cls, kind, request["kind"], request["size"]) == ("clip", "media", "clip", len(CLIP))
    assert device.media.kept("ev-3", "clip") is None


def test_end_reports_with_inline_thumbnails_are_split_by_size(device):
    thumb = webp(120, noise=False)
    events = [finished(f"ev-{i}", thumbnail=thumb) for i in range(120)]
    device.reporter.report(events)
    messages = device.drain()
    assert len(messages) > 1 and all(cls == "event" for cls, _, _ in messages)
    sizes = [len(json.dumps(body)) for _, _, body in messages]
    assert max(sizes) < MAX_EVENTS_BYTES + 4 * INLINE_THUMBNAIL_MAX_BYTES
    ids = [e["event_id"] for _, _, body in messages for e in body["events"]]
    assert ids == [f"ev-{i}" for i in range(120)]
    assert device.queue.sent_bytes_by_class()["thumbnail"] == 120 * len(base64.b64encode(thumb))


def test_media_store_keeps_clips_and_hands_them_out_on_request(tmp_path):
    store = MediaStore(tmp_path / "media", quota_bytes=10**6)
    store.keep("ev-1", "clip", CLIP, "video/mp4")
    assert store.request_kept("ev-9", "clip") is None
    stored = store.request_kept("ev-1", "clip")
    assert stored.sha256 == hashlib.sha256(CLIP).hexdigest() and stored.content_type == "video/mp4"
    pending = store.find(stored.request_id)
    assert pending.requested and pending.kind == "clip" and pending.path.read_bytes() == CLIP
    # The kept clip outlives its upload, so it can be asked for again.
    store.remove(stored.request_id)
    assert store.find(stored.request_id) is None and store.kept("ev-1", "clip").read_bytes() == CLIP
    assert not store.find(
        store.save("snapshot", b"\xff\xd8\xff" + b"x" * 10, "image/jpeg").request_id
    ).requested


def test_media_quota_evicts_kept_clips_before_files_waiting_for_upload(tmp_path):
    store = MediaStore(tmp_path / "media", quota_bytes=3 * 5000 + 100)
    waiting = store.save("snapshot", b"s" * 5000, "image/jpeg")
    store.keep("old", "clip", b"a" * 5000, "video/mp4")
    asked = store.request_kept("old", "clip")  # a hard link: its bytes count once
    store.keep("mid", "clip", b"b" * 5000, "video/mp4")
    assert store.usage() == 15_000 and store.kept("old", "clip") is not None
    store.keep("new", "clip", b"c" * 5000, "video/mp4")
    # Over quota: "mid" goes (deleting "old"'s kept name would free nothing while its upload waits).
    assert store.kept("mid", "clip") is None and store.kept("new", "clip") is not None
    assert store.find(waiting.request_id) is not None and store.find(asked.request_id) is not None
    assert store.usage() <= store.quota_bytes
