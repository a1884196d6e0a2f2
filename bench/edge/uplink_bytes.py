"""Uplink bytes of a run's events, as the agent would send them (bench only, no network).

The detection events go through the agent's own Outbox (its encoder, its class choice)
into a capturing queue, in the per-frame batches the camera thread hands to
Agent.on_events; each media file gets an up/media request, an HTTP PUT on an S3
presigned part URL and an up/media complete, as in edge/agent/runner.py and
edge/uplink/media.py. Two counts:

- content: up/events payloads + media file bytes (what the first version of this bench
  counted);
- wire: every MQTT 3.1.1 PUBLISH packet (fixed header, topic, packet id, payload) of
  up/events and up/media, plus every HTTP PUT request (request line, headers, body).
  TLS records, TCP/IP headers, TLS handshakes and MQTT keepalives are left out, as the
  1 Mbit/s stream figure leaves out its RTP/TCP framing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import boto3
import requests
from botocore.config import Config

from edge.agent.outbox import Outbox
from edge.telemetry import TelemetryBatcher, sample_system
from edge.uplink.media import upload_session
from edge.vision.events import DetectionEvent
from edge.vision.media import THUMBNAIL_CONTENT_TYPE
from protocol.messages import new_message_id

DEVICE_ID = "cam-0123456789ab"  # devices.services.new_device_id(): "cam-" + 12 hex digits
ALERT_LABELS = ("person",)  # AgentConfig.alert_labels default
# Presigned part URLs as fleet.storage.s3.S3Backend makes them (path style, SigV4, long-term
# keys: temporary credentials would add an X-Amz-Security-Token of several hundred bytes).
S3_ENDPOINT = "https://s3.eu-central-1.amazonaws.com"
S3_BUCKET = "fleet-media"
UPLOAD_ID_CHARS = 64  # AWS upload ids are 60-160 characters; SeaweedFS's are shorter
EXT = {"image/jpeg": "jpg", "video/mp4": "mp4"}


class _CaptureQueue:
    """Stands in for UplinkQueue: keeps what Outbox.put queues, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, bytes]] = []

    def put(self, cls: str, topic: str, payload: bytes) -> int:
        self.items.append((cls, topic, payload))
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

    def as_dict(self) -> dict:
        return {
            "content": dict(self.content),
            "wire": dict(self.wire),
            "messages": dict(self.messages),
            "parts": dict(self.parts),
        }

    def add_mqtt(self, cls: str, topic: str, payload: bytes) -> None:
        n = mqtt_publish_bytes(topic, payload)
        self.wire[cls] += n
        self.messages[cls] += 1
        kind = topic.rsplit("/", 1)[-1]
        self.parts[f"{kind}_{json.loads(payload)['op']}" if kind == "media" else kind] += n


def with_media(event: DetectionEvent, *, clip_labels: Iterable[str] | None) -> DetectionEvent:
    """The event as the agent would have it under `clip_labels` (None: every label)."""
    if event.clip is None or clip_labels is None or event.label in set(clip_labels):
        return event
    return dataclasses.replace(event, clip=None)


def account(
    batches: Sequence[Sequence[DetectionEvent]], *, clip_labels: Iterable[str] | None, epoch: float
) -> Tally:
    """Replay the run's per-frame event batches through the agent's Outbox; bytes by class.

    Scene times are shifted by `epoch` (a wall-clock time): the agent stamps events with
    wall-clock seconds, which take more digits than a scene's 0..300 s.
    """
    clip_labels = None if clip_labels is None else tuple(clip_labels)
    queue = _CaptureQueue()
    outbox = Outbox(queue=queue, device_id=DEVICE_ID, alert_labels=ALERT_LABELS)
    put = PresignedPut()
    tally = Tally()
    for batch in batches:
        events = [
            dataclasses.replace(
                with_media(ev, clip_labels=clip_labels),
                start=ev.start + epoch,
                end=None if ev.end is None else ev.end + epoch,
            )
            for ev in batch
        ]
        start = len(queue.items)
        outbox.events([ev.metadata() for ev in events])
        for cls, _, payload in queue.items[start:]:
            tally.content[cls] += len(payload)
        for ev in events:  # Agent.on_events, then the media worker's upload and complete
            for kind, data, ctype in (
                ("snapshot", ev.thumbnail_jpeg, THUMBNAIL_CONTENT_TYPE),
                ("clip", ev.clip, ev.clip_content_type),
            ):
                if not data:
                    continue
                request_id = new_message_id()  # edge.agent.media_store names requests this way
                outbox.media_request(
                    request_id=request_id,
                    event_id=ev.event_id,
                    kind=kind,
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    content_type=ctype,
                )
                key = f"media/{DEVICE_ID}/{ev.event_id}/{request_id}.{EXT[ctype]}"  # the server's key
                cls = "thumbnail" if kind == "snapshot" else "clip"
                tally.content[cls] += len(data)
                put_bytes = put.request_bytes(key=key, body=data)
                tally.wire[cls] += put_bytes
                tally.parts[f"put_head_{kind}"] += put_bytes - len(data)
                tally.parts[f"body_{kind}"] += len(data)
                etag = f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'  # S3's part ETag
                outbox.media_complete(kind, request_id, [{"number": 1, "etag": etag}])
        for cls, topic, payload in queue.items[start:]:
            tally.add_mqtt(cls, topic, payload)
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
    sample_s: float = 10.0,
    interval_s: float = 60.0,
) -> Tally:
    """One hour of up/telemetry at the agent's default periods (AgentConfig telemetry_sample_s,
    telemetry_interval_s), through TelemetryBatcher and Outbox, with this machine's readings."""
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
    for cls, topic, payload in queue.items:
        tally.content[cls] += len(payload)
        tally.add_mqtt(cls, topic, payload)
    return tally
