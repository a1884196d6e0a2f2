"""Pipeline events -> what the agent queues: event reports, thumbnails, clips.

Per finished event:
- the thumbnail goes inline in the end report (base64, protocol.images) when it fits the
  inline cap and the bandwidth policy sends thumbnails right behind event reports
  (`thumbnail` allowed, no class ranked between `event` and `thumbnail`): then it needs
  no upload grant round trip, which costs more bytes than a small thumbnail itself.
  Otherwise it waits in the media store with an up/media request in the thumbnail class,
  held or sent by that class's own rules as before;
- the clip is uploaded at once if its label is in `clip_labels` (up/media request in the
  clip class), else kept on the device for the upload_clip command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edge.agent.media_store import MediaStore
from edge.agent.outbox import Outbox
from edge.uplink import BandwidthPolicy
from edge.vision.events import DetectionEvent
from protocol.images import fits_inline

THUMBNAIL, EVENT = "thumbnail", "event"


def thumbnails_inline(policy: BandwidthPolicy) -> bool:
    """The policy sends thumbnails right behind event reports, so one may ride in an end report."""
    if THUMBNAIL not in policy.classes_allowed:
        return False
    order = policy.class_priority
    return abs(order.index(THUMBNAIL) - order.index(EVENT)) == 1


class EventReporter:
    def __init__(self, *, outbox: Outbox, media: MediaStore, policy: Callable[[], BandwidthPolicy]) -> None:
        self.outbox = outbox
        self.media = media
        self.policy = policy

    def report(self, events: Sequence[DetectionEvent]) -> None:
        inline_ok = thumbnails_inline(self.policy())
        reports, uploads = [], []
        for ev in events:
            inline = inline_ok and ev.thumbnail is not None and fits_inline(ev.thumbnail)
            reports.append(ev.metadata(inline_thumbnail=inline))
            if ev.thumbnail and not inline:
                uploads.append((ev.event_id, "snapshot", ev.thumbnail, ev.thumbnail_content_type))
            if ev.clip and ev.clip_upload:
                uploads.append((ev.event_id, "clip", ev.clip, ev.clip_content_type))
            elif ev.clip:
                self.media.keep(ev.event_id, "clip", ev.clip, ev.clip_content_type)
        self.outbox.events(reports)
        for event_id, kind, data, content_type in uploads:
            stored = self.media.save(kind, data, content_type)
            self.outbox.media_request(
                request_id=stored.request_id,
                event_id=event_id,
                kind=kind,
                size=stored.size,
                sha256=stored.sha256,
                content_type=content_type,
            )
