"""Commands: send on down/cmd after commit, follow up/ack, expire the ones never answered.

States: sent -> acknowledged -> succeeded | failed, and sent | acknowledged -> expired.
A device may skip `acknowledged` (the ack was lost); a terminal state never changes.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from devices.models import Device, DeviceState
from fleet.audit import Actor, audit_record, snapshot
from fleet.errors import FleetError
from protocol.down import Command as CommandMessage
from protocol.errors import MessageError
from protocol.messages import make, new_message_id
from protocol.up import Ack
from telemetry.commands.downlink import send_on_commit
from telemetry.models.commands import TERMINAL_STATES, Command, CommandState
from telemetry.models.events import Event

DEFAULT_TTL_S = 300
MAX_TTL_S = 7 * 24 * 3600


class CommandError(FleetError):
    pass


# Ack reasons the ingest dead-letters (the ack is ignored).
UNKNOWN_COMMAND = "unknown_command"
COMMAND_EXPIRED = "command_expired"


def command_send(
    *, actor: Actor, device: Device, name: str, args: dict | None = None, ttl_s: int = DEFAULT_TTL_S
) -> Command:
    """Record the command and publish it on down/cmd once the transaction commits."""
    if device.state != DeviceState.ACTIVE:
        raise CommandError(
            "invalid_state",
            f"Device {device.device_id} is {device.state}; only active devices take commands.",
            status=409,
        )
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise CommandError(
            "validation_error", "Invalid input.", fields={"ttl_s": [f"1..{MAX_TTL_S} seconds."]}
        )
    command_id = new_message_id()
    expires_at = timezone.now() + dt.timedelta(seconds=ttl_s)
    try:
        # The message id is the command id: a redelivered down/cmd is recognised by the device.
        msg = make(
            CommandMessage,
            id=command_id,
            command_id=command_id,
            name=name,
            args=args or {},
            expires=expires_at.timestamp(),
        )
    except MessageError as exc:
        raise CommandError(
            "validation_error", exc.detail or "Invalid command.", fields={"args": [exc.detail]}
        ) from exc
    if (
        name == "upload_clip"
        and not Event.objects.filter(device=device, event_id=msg.args["event_id"]).exists()
    ):
        # The device would only answer "no clip kept"; an operator's typo is better said now.
        detail = f"No event {msg.args['event_id']!r} from {device.device_id}."
        raise CommandError("validation_error", detail, fields={"args": [detail]})
    with transaction.atomic():
        command = Command.objects.create(
            command_id=command_id,
            device=device,
            name=name,
            args=msg.args,
            expires_at=expires_at,
            created_by=actor.user,
        )
        audit_record(actor=actor, action=f"command.{name}", instance=command, after=snapshot(command))
        send_on_commit(device.device_id, msg)
    return command


def _apply(command: Command, ack: Ack, at: dt.datetime) -> bool:
    """Move `command` by one ack; False when the ack changes nothing (duplicate or late)."""
    if command.state in TERMINAL_STATES:
        return False
    if ack.status == CommandState.ACKNOWLEDGED:
        if command.state != CommandState.SENT:
            return False
        command.state, command.acknowledged_at = CommandState.ACKNOWLEDGED, at
    else:
        command.state, command.finished_at = ack.status, at
        command.acknowledged_at = command.acknowledged_at or at
        command.result = ack.result
    command.detail = (ack.detail or "")[:2000]
    return True


def commands_ack(*, device_pk: int, acks: list[tuple[Ack, dt.datetime]]) -> list[tuple[Ack, str]]:
    """Apply a batch of acks from one device, in order; returns the refused ones with their reason."""
    ids = {ack.command_id for ack, _ in acks}
    commands = {
        c.command_id: c
        for c in Command.objects.select_for_update().filter(device_id=device_pk, command_id__in=ids)
    }
    refused, changed = [], {}
    for ack, at in acks:
        command = commands.get(ack.command_id)
        if command is None:
            refused.append((ack, UNKNOWN_COMMAND))
        elif command.state == CommandState.EXPIRED:
            refused.append((ack, COMMAND_EXPIRED))
        elif _apply(command, ack, at):
            changed[command.pk] = command
    Command.objects.bulk_update(
        changed.values(), ["state", "acknowledged_at", "finished_at", "result", "detail", "updated_at"]
    )
    return refused


def commands_expire(*, now: dt.datetime | None = None) -> int:
    """Commands still unanswered past their expiry become expired; returns how many."""
    now = now or timezone.now()
    return Command.objects.filter(
        state__in=[CommandState.SENT, CommandState.ACKNOWLEDGED], expires_at__lte=now
    ).update(state=CommandState.EXPIRED, finished_at=now, updated_at=now)
