"""up/ack: acks move commands along; acks for unknown or expired commands are dead-lettered."""

from __future__ import annotations

import logging
from collections import defaultdict

from protocol.messages import encode
from telemetry.commands.services import commands_ack
from telemetry.ingest.types import Inbound

log = logging.getLogger(__name__)


def handle_acks(*, items: list[Inbound]) -> None:
    by_device: dict[int, list[Inbound]] = defaultdict(list)
    for item in items:
        by_device[item.device_pk].append(item)
    for device_pk, inbound in by_device.items():
        refused = commands_ack(device_pk=device_pk, acks=[(i.message, i.received_at) for i in inbound])
        if refused:
            by_id = {i.message.id: i for i in inbound}
            _dead_letter([(by_id[ack.id], reason) for ack, reason in refused])


def _dead_letter(refused: list[tuple[Inbound, str]]) -> None:
    # Kept beside the ingest's own refusals so an operator sees them in one place.
    from telemetry.models.ingest import DEAD_LETTER_PAYLOAD_BYTES, DeadLetter

    DeadLetter.objects.bulk_create(
        DeadLetter(
            received_at=item.received_at,
            topic=item.topic,
            device_id=item.device_id,
            kind=item.kind,
            message_id=item.message.id,
            reason=reason,
            detail=f"command {item.message.command_id}",
            payload=payload[:DEAD_LETTER_PAYLOAD_BYTES],
            payload_size=len(payload),
        )
        for item, reason, payload in ((i, r, encode(i.message)) for i, r in refused)
    )
    log.info("ignored %d ack(s): %s", len(refused), sorted({r for _, r in refused}))
