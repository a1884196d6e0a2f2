"""Uplink bytes of a run's events, as the agent would send them (bench only, no network).

The detection events go through the agent's own EventReporter and Outbox (its choice of
inline thumbnail or upload grant, of kept or uploaded clip, its encoder and its uplink
classes) into a capturing queue, in the per-frame batches the camera thread hands to
Agent.on_events; each up/media request it queues gets an HTTP PUT on an S3 presigned part
URL and an up/media complete, as the agent's media worker does (edge/agent/handlers.py,
edge/uplink/media.py). Two counts:

- content: up/events payloads + media file bytes;
- wire: every MQTT 3.1.1 PUBLISH packet (fixed header, topic, packet id, payload) of
  up/events and up/media, plus every HTTP PUT request (request line, headers, body).
  TLS records, TCP/IP headers, TLS handshakes and MQTT keepalives are left out, as the
  1 Mbit/s stream figure leaves out its RTP/TCP framing.

A thumbnail inline in an end report is counted in the thumbnail class (its base64
characters), the rest of the report in its own class, as the agent's queue counts them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import msgspec
import requests
from botocore.config import Config

from edge.agent.config import AgentConfig
from edge.agent.media_store import MediaStore
from edge.agent.outbox import Outbox
from edge.agent.reporting import EventReporter
from edge.telemetry import TelemetryBatcher, sample_system
from edge.uplink import BandwidthPolicy
from edge.uplink.media import upload_session
from edge.vision.events import DetectionEvent
from protocol.down import DeviceConfig

DEVICE_ID = "cam-0123456789ab"  # devices.services.new_device_id(): "cam-" + 12 hex digits
ALERT_LABELS = ("person",)  # AgentConfig.alert_labels default
# Presigned part URLs as fleet.storage.s3.S3Backend makes them (path style, SigV4, long-term
# keys: temporary credentials would add an X-Amz-Security-Token of several hundred bytes).
S3_ENDPOINT = "https://s3.eu-central-1.amazonaws.com"
S3_BUCKET = "fleet-media"
UPLOAD_ID_CHARS = 64  # AWS upload ids are 60-160 characters; SeaweedFS's are shorter
EXT = {"image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}


# The bandwidth policy a device gets from a server with no policy configured (DeviceConfig()).
SERVER_DEFAULT_POLICY = BandwidthPolicy.from_config(msgspec.to_builtins(DeviceConfig().bandwidth))
# A policy that ranks telemetry between event reports and thumbnails: the agent then sends each
# thumbnail on its own, through an upload grant (the path every thumbnail took before inlining).
GRANT_PATH_POLICY = BandwidthPolicy.from_config(
    {"max_kbps": 512, "class_priority": ["alert", "event", "telemetry", "thumbnail", "clip"]}
)


class _CaptureQueue:
    """Stands in for UplinkQueue: keeps what Outbox.put queues, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, bytes, int]] = []

    def put(self, cls: str, topic: str, payload: bytes, *, inline_bytes: int = 0) -> int:
        self.items.append((cls, topic, payload, inline_bytes))
        return len(self.items)


def mqtt_publish_bytes(topic: str, payload: bytes, *, qos: int = 1) -> int:
    """Length of an MQTT 3.1.1 PUBLISH packet carrying `payload` on `topic`."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    varint = 1 + (remaining >= 128) + (remaining >= 16_384) + (remaining >= 2_097_152)
    return 1 + varint + remaining


class PresignedPut:
    """HTTP PUT requests of single-part uploads on presigned S3 part URLs (made offline)."""

    def __init__(self) -> None:
        self.client = boto3.client(
            "s3",
            endpoint_url=S3_ENDPOINT,
            aws_access_key_id="AKIA" + "X" * 16,
            aws_secret_access_key="x" * 40,
            region_name="eu-central-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        self.session = upload_session()

    def request_bytes(self, *, key: str, body: bytes) -> int:
        """Request line + headers + body, as requests/urllib3 put them on the connection."""
        url = self.client.generate_presigned_url(
            "upload_part",
            Params={"Bucket": S3_BUCKET, "Key": key, "UploadId": "u" * UPLOAD_ID_CHARS, "PartNumber": 1},
            ExpiresIn=3600,
            HttpMethod="PUT",
        )
        prepared = self.session.prepare_request(requests.Request("PUT", url, data=body))
        headers = dict(prepared.headers)
        # urllib3 adds these two at send time (checked against a socket capture).
        headers = {"Host": urlsplit(url).netloc, "Accept-Encoding": "identity", **headers}
        head = f"PUT {prepared.path_url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return len((head + "\r\n").encode()) + len(body)


@dataclasses.dataclass
class Tally:
    """Bytes by uplink class (alert, event, thumbnail, clip, telemetry)."""

    content: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    wire: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    messages: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    # Wire bytes by what they are: up/events, up/media request / complete, PUT head / body.
    parts: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))

    kept_clips: int = 0  # clips left on the device (clip_keep), not uploaded

    def as_dict(self) -> dict:
        return {
            "content": dict(self.content),
            "wire": dict(self.wire),
            "messages": dict(self.messages),
            "parts": dict(self.parts),
            "kept_clips": self.kept_clips,
        }

    def add_mqtt(self, cls: str, topic: str, payload: bytes, inline: int = 0) -> None:
        """One queued item: its payload as content and its PUBLISH packet as wire bytes; inline
        thumbnail characters go to the thumbnail class, the rest to the item's class."""
        n = mqtt_publish_bytes(topic, payload)
        self.content[cls] += len(payload) - inline
        self.wire[cls] += n - inline
        if inline:
            self.content["thumbnail"] += inline
            self.wire["thumbnail"] += inline
        self.messages[cls] += 1
        kind = topic.rsplit("/", 1)[-1]
        part = f"{kind}_{json.loads(payload)['op']}" if kind == "media" else kind
        self.parts[part] += n - inline
        if inline:
            self.parts["events_inline_thumbnail"] += inline


def account(
    batches: Sequence[Sequence[DetectionEvent]],
    *,
    clip_labels: Iterable[str] | None,
    epoch: float,
    policy: BandwidthPolicy = SERVER_DEFAULT_POLICY,
) -> Tally:
    """Replay the run's per-frame event batches through the agent's EventReporter; bytes by class.

    `clip_labels` as in down/config (None: every clip uploaded, []: none, kept on the device).
    Scene times are shifted by `epoch` (a wall-clock time): the agent stamps events with
    wall-clock seconds, which take more digits than a scene's 0..300 s.
    """
    labels = None if clip_labels is None else frozenset(clip_labels)
    queue = _CaptureQueue()
    outbox = Outbox(queue=queue, device_id=DEVICE_ID, alert_labels=ALERT_LABELS)
    put = PresignedPut()
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        store = MediaStore(Path(tmp), quota_bytes=2**40)
        reporter = EventReporter(outbox=outbox, media=store, policy=lambda: policy)
        for batch in batches:
            events = [
                dataclasses.replace(
                    ev,
                    start=ev.start + epoch,
                    end=None if ev.end is None else ev.end + epoch,
                    clip_upload=ev.clip is not None and (labels is None or ev.label in labels),
                )
                for ev in batch
            ]
            start = len(queue.items)
            reporter.report(events)
            for _, topic, payload, _ in list(queue.items[start:]):
                body = json.loads(payload)
                if not topic.endswith("/media") or body["op"] != "request":
                    continue
                # The media worker: the grant arrives, the file is PUT, the upload completed.
                found = store.find(body["request_id"])
                data = found.path.read_bytes()
                key = f"media/{DEVICE_ID}/{body['event_id']}/{body['request_id']}.{EXT[body['content_type']]}"
                cls = "thumbnail" if found.kind == "snapshot" else "clip"
                put_bytes = put.request_bytes(key=key, body=data)
                tally.content[cls] += len(data)
                tally.wire[cls] += put_bytes
                tally.parts[f"put_head_{found.kind}"] += put_bytes - len(data)
                tally.parts[f"body_{found.kind}"] += len(data)
                etag = f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'  # S3's part ETag
                outbox.media_complete(found.kind, body["request_id"], [{"number": 1, "etag": etag}])
                store.remove(body["request_id"])
            for cls, topic, payload, inline in queue.items[start:]:
                tally.add_mqtt(cls, topic, payload, inline)
        tally.kept_clips = sum(1 for _ in store.kept_dir.iterdir())
    return tally


class _QueueStats:
    """A connected, drained queue: depth 0, sent counters growing at the run's rate per class."""

    def __init__(self, per_second: dict[str, float], clock: list[float]) -> None:
        self.per_second = per_second
        self.clock = clock

    def depth_by_class(self) -> dict[str, int]:
        return dict.fromkeys(self.per_second, 0)

    def sent_bytes_by_class(self) -> dict[str, int]:
        return {cls: round(rate * self.clock[0]) for cls, rate in self.per_second.items()}


def telemetry_per_hour(
    *,
    sent_per_hour: dict[str, int],
    fps: float,
    inference_ms: float,
    sample_s: float = AgentConfig.telemetry_sample_s,
    interval_s: float = AgentConfig.telemetry_interval_s,
) -> Tally:
    """One hour of up/telemetry, by default at the agent's default periods (AgentConfig
    telemetry_sample_s, telemetry_interval_s), through TelemetryBatcher and Outbox, with this
    machine's readings."""
    clock = [0.0]
    rates = {
        cls: sent_per_hour.get(cls, 0) / 3600 for cls in ("alert", "event", "thumbnail", "telemetry", "clip")
    }
    batcher = TelemetryBatcher(
        queue=_QueueStats(rates, clock),
        interval_s=interval_s,
        clock=lambda: clock[0],
        wall=lambda: time.time() + clock[0],
        system=sample_system,
    )
    queue = _CaptureQueue()
    outbox = Outbox(queue=queue, device_id=DEVICE_ID, alert_labels=ALERT_LABELS)
    while clock[0] < 3600:
        clock[0] += sample_s
        batcher.observe(fps=fps, inference_ms=inference_ms)
        body = batcher.tick()
        if body is not None:
            outbox.telemetry(body["samples"])
    tally = Tally()
    for cls, topic, payload, inline in queue.items:
        tally.add_mqtt(cls, topic, payload, inline)
    return tally
