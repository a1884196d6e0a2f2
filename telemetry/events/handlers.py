"""up/events: each device's detections go to the events service in one bulk upsert."""

from __future__ import annotations

from collections import defaultdict

from devices.models import Device
from telemetry.events.services import events_ingest
from telemetry.ingest.types import Inbound


def handle_events(*, items: list[Inbound]) -> None:
    by_device: dict[int, list] = defaultdict(list)
    for item in items:
        by_device[item.device_pk].extend(item.message.events)
    devices = Device.objects.in_bulk(list(by_device))
    for pk, detections in by_device.items():
        events_ingest(device=devices[pk], detections=detections)
