"""Everything the agent says goes through here into the durable uplink queue, in its priority class.

Classes (highest first): alert > event > thumbnail > telemetry > clip.
- events: the start report of an event whose label is an alert label -> alert (it must reach
  a person now); every other event report -> event.
- ack, ota, cert -> alert: tiny control-plane answers a server-side state machine or an
  operator is waiting on; they must pass quiet hours and a spent budget, as alerts do
  (a held cert request could let the identity expire).
- media requests and completes -> the class of the media (thumbnail for snapshots, clip for
  clips), so a metered link that holds clips also holds their upload requests.
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
MAX_EVENTS_PER_MESSAGE = 200


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

    def put(self, cls: str, msg: Message) -> int | None:
        """Queue durably; None if the queue refused it (quota), which is counted, never raised."""
        _, kind = kind_of(msg)
        try:
            item_id = self.queue.put(cls, topics.up(self.device_id, kind), encode(msg))
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
            for i in range(0, len(group), MAX_EVENTS_PER_MESSAGE):
                item = self.put(cls, make(Events, events=group[i : i + MAX_EVENTS_PER_MESSAGE]))
                if item is not None:
                    ids.append(item)
        return ids

    def telemetry(self, samples: list[dict[str, Any]]) -> int | None:
        return self.put("telemetry", make(Telemetry, samples=samples))

    def ack(
        self, command_id: str, status: str, *, detail: str | None = None, result: dict | None = None
    ) -> None:
        self.put("alert", make(Ack, command_id=command_id, status=status, detail=detail, result=result))

    def ota(self, **fields: Any) -> None:
        self.put("alert", make(OtaReport, **fields))

    def cert_request(self, request_id: str, csr_pem: str) -> None:
        self.put("alert", make(CertRequest, request_id=request_id, csr_pem=csr_pem))

    def media_request(self, **fields: Any) -> None:
        self.put(MEDIA_CLASS[fields["kind"]], make(MediaRequest, **fields))

    def media_complete(self, kind: str, request_id: str, parts: list[dict[str, Any]]) -> None:
        uploaded = [UploadedPart(number=int(p["number"]), etag=str(p["etag"])) for p in parts]
        self.put(MEDIA_CLASS[kind], make(MediaComplete, request_id=request_id, parts=uploaded))
