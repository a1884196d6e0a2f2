"""up/events: each device's detections go to the events service in one bulk upsert; thumbnails
carried inline in end reports are stored as the events' snapshots."""

from __future__ import annotations

import logging
from collections import defaultdict

from devices.models import Device
from protocol.up import Detection
from telemetry.events.services import events_ingest
from telemetry.ingest.services import handler_dead_letters_record
from telemetry.ingest.types import Inbound
from telemetry.media.services import InlineRefused, media_inline_store
from telemetry.models.events import Event

log = logging.getLogger(__name__)


def handle_events(*, items: list[Inbound]) -> None:
    by_device: dict[int, list[Inbound]] = defaultdict(list)
    for item in items:
        by_device[item.device_pk].append(item)
    devices = Device.objects.select_related("site").in_bulk(list(by_device))
    for pk, inbound in by_device.items():
        device = devices[pk]
        events_ingest(device=device, detections=[d for i in inbound for d in i.message.events])
        inline = [(i, d) for i in inbound for d in i.message.events if d.thumbnail is not None]
        if inline:
            _store_inline(device, inline)


def _store_inline(device: Device, inline: list[tuple[Inbound, Detection]]) -> None:
    """After the events exist: each inline thumbnail becomes its event's snapshot, or a dead letter."""
    events = {
        e.event_id: e
        for e in Event.objects.filter(
            device=device, event_id__in={d.event_id for _, d in inline}
        ).select_related("device__site")
    }
    refused = []
    for item, detection in inline:
        try:
            media_inline_store(
                event=events[detection.event_id], thumbnail=detection.thumbnail, at=item.received_at
            )
        except InlineRefused as exc:
            refused.append((item, detection, exc))
    if refused:
        _dead_letter(refused)


def _dead_letter(refused: list[tuple[Inbound, Detection, InlineRefused]]) -> None:
    # The payload kept is the thumbnail itself (4096 base64 characters at the inline cap: the whole of it).
    handler_dead_letters_record(
        [
            (
                item,
                exc.error,
                f"event {detection.event_id}: inline thumbnail not stored ({exc.detail}); the event is kept",
                detection.thumbnail.encode("utf-8", "surrogatepass"),
            )
            for item, detection, exc in refused
        ]
    )
    log.info("refused %d inline thumbnail(s): %s", len(refused), sorted({exc.error for _, _, exc in refused}))
