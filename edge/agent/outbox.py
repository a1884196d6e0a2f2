"""Everything the agent says goes through here into the durable uplink queue, in its priority class.

Classes (highest first): alert > event > thumbnail > telemetry > clip.
- events: the start report of an event whose label is an alert label -> alert (it must reach
  a person now); every other event report -> event. A thumbnail inline in an end report
  travels with it, and its bytes are counted as sent in the thumbnail class (EventReporter
  inlines only when the policy sends thumbnails right behind event reports).
- ack, ota, cert -> alert: tiny control-plane answers a server-side state machine or an
  operator is waiting on; they must pass quiet hours and a spent budget, as alerts do
  (a held cert request could let the identity expire).
- media requests and completes -> the class of the media (thumbnail for snapshots, clip for
  clips), so a metered link that holds clips also holds their upload requests; an upload an
  operator asked for (upload_clip) -> event: a metered link holds clips "unless asked for",
  quiet hours and the daily budget still apply.
- telemetry -> telemetry.
The birth/offline status is not queued: it describes the current connection and is
published by the link itself (a queued "online" from an old connection would lie).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from edge.uplink import UplinkError, UplinkQueue
from protocol import topics
from protocol.messages import (
    Ack,
    CertRequest,
    Events,
    MediaComplete,
    MediaRequest,
    Message,
    OtaReport,
    Telemetry,
    UploadedPart,
    encode,
    kind_of,
    make,
)

log = logging.getLogger(__name__)

MEDIA_CLASS = {"snapshot": "thumbnail", "clip": "clip"}
REQUESTED_MEDIA_CLASS = "event"
MAX_EVENTS_PER_MESSAGE = 200
# Inline thumbnails make end reports large: a message is closed at this many payload bytes
# (well inside MAX_PAYLOAD_BYTES, so one queue item never holds a quarter of a megabyte).
MAX_EVENTS_BYTES = 64 * 1024


class Outbox:
    def __init__(
        self,
        *,
        queue: UplinkQueue,
        device_id: str,
        alert_labels: Iterable[str],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.queue = queue
        self.device_id = device_id
        self.alert_labels = frozenset(alert_labels)
        self._wake = wake
        self.dropped: dict[str, int] = {}

    def put(self, cls: str, msg: Message, *, inline_bytes: int = 0) -> int | None:
        """Queue durably; None if the queue refused it (quota), which is counted, never raised."""
        _, kind = kind_of(msg)
        try:
            item_id = self.queue.put(
                cls, topics.up(self.device_id, kind), encode(msg), inline_bytes=inline_bytes
            )
        except UplinkError as exc:
            self.dropped[exc.reason] = self.dropped.get(exc.reason, 0) + 1
            log.warning("uplink refused a %s %s message: %s", cls, kind, exc)
            return None
        self._wake()
        return item_id

    def events(self, detections: list[dict[str, Any]]) -> list[int]:
        """Queue event reports (protocol Detection dicts); alert-label starts go separately as alerts."""
        alerts = [d for d in detections if d.get("end") is None and d["label"] in self.alert_labels]
        rest = [d for d in detections if d not in alerts]
        ids = []
        for cls, group in (("alert", alerts), ("event", rest)):
            for chunk in _chunks(group):
                inline = sum(len(d.get("thumbnail") or "") for d in chunk)
                item = self.put(cls, make(Events, events=chunk), inline_bytes=inline)
                if item is not None:
                    ids.append(item)
        return ids

    def telemetry(
        self, samples: list[dict[str, Any]], quality: list[dict[str, Any]] | None = None
    ) -> int | None:
        """Health samples and, per model version, its quality over the same window."""
        return self.put("telemetry", make(Telemetry, samples=samples, quality=quality or []))

    def ack(
        self, command_id: str, status: str, *, detail: str | None = None, result: dict | None = None
    ) -> None:
        self.put("alert", make(Ack, command_id=command_id, status=status, detail=detail, result=result))

    def ota(self, **fields: Any) -> None:
        self.put("alert", make(OtaReport, **fields))

    def cert_request(self, request_id: str, csr_pem: str) -> None:
        self.put("alert", make(CertRequest, request_id=request_id, csr_pem=csr_pem))

    def media_request(self, *, requested: bool = False, **fields: Any) -> None:
        cls = REQUESTED_MEDIA_CLASS if requested else MEDIA_CLASS[fields["kind"]]
        self.put(cls, make(MediaRequest, **fields))

    def media_complete(
        self, kind: str, request_id: str, parts: list[dict[str, Any]], *, requested: bool = False
    ) -> None:
        uploaded = [UploadedPart(number=int(p["number"]), etag=str(p["etag"])) for p in parts]
        cls = REQUESTED_MEDIA_CLASS if requested else MEDIA_CLASS[kind]
        self.put(cls, make(MediaComplete, request_id=request_id, parts=uploaded))


def _chunks(detections: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """Consecutive groups of at most MAX_EVENTS_PER_MESSAGE events and ~MAX_EVENTS_BYTES."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for d in detections:
        # An estimate, not the encoding: the inline thumbnail is nearly all of a big event.
        n = 300 + len(d.get("thumbnail") or "")
        if chunk and (len(chunk) >= MAX_EVENTS_PER_MESSAGE or size + n > MAX_EVENTS_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(d)
        size += n
    if chunk:
        yield chunk
