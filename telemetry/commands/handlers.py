"""up/ack: acks move commands along; acks for unknown or expired commands are dead-lettered."""

from __future__ import annotations

import logging
from collections import defaultdict

from protocol.messages import encode
from telemetry.commands.services import commands_ack
from telemetry.ingest.services import handler_dead_letters_record
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
    handler_dead_letters_record(
        [
            (item, reason, f"command {item.message.command_id}", encode(item.message))
            for item, reason in refused
        ]
    )
    log.info("ignored %d ack(s): %s", len(refused), sorted({r for _, r in refused}))
