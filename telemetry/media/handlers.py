"""up/media: grant requests and completions, in arrival order."""

from __future__ import annotations

from devices.models import Device
from protocol.up import MediaComplete, MediaRequest
from telemetry.ingest.types import Inbound
from telemetry.media.services import media_complete, media_request


def handle_media(*, items: list[Inbound]) -> None:
    devices = Device.objects.select_related("site").in_bulk({i.device_pk for i in items})
    for item in items:
        device, msg = devices[item.device_pk], item.message
        if isinstance(msg, MediaRequest):
            media_request(device=device, request=msg, now=item.received_at)
        elif isinstance(msg, MediaComplete):
            media_complete(device=device, complete=msg, now=item.received_at)
