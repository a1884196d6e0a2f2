"""One batch of raw MQTT messages -> one database transaction.

Order of refusals, each a dead letter with its reason: the topic (`topic`), the
payload (`protocol.messages.decode_up`: oversize, bad_json, unknown_version, schema),
the device (`unknown_device`, `decommissioned`). Accepted messages claim their
(device id, message id) with INSERT ... ON CONFLICT DO NOTHING RETURNING: what the
insert did not return was processed before (a QoS 1 redelivery) and is dropped.
Under two replicas the unique index serialises the claim, so a message redelivered
to the other replica is still handled once. The new messages then go, grouped by
kind, to the kinds' handlers (`dispatch`), each in a savepoint.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from devices.models import Device, DeviceState
from devices.status_services import devices_mark_seen
from protocol import topics
from protocol.errors import MessageError, TopicError
from protocol.messages import decode_up
from telemetry.ingest import dispatch
from telemetry.ingest.types import BatchResult, Inbound, RawMessage
from telemetry.models import DeadLetter, ProcessedMessage
from telemetry.models.ingest import DEAD_LETTER_PAYLOAD_BYTES, DeadLetterReason
from telemetry.status.services import status_mark_resumed

log = logging.getLogger(__name__)

# Errors that mean "the database is not there", not "this input is bad": the batch is retried.
DB_UNAVAILABLE = (OperationalError, InterfaceError)
_CLAIM_CHUNK = 500  # rows per INSERT: well under SQLite's and PostgreSQL's parameter limits


def _dead(
    raw: RawMessage, reason: str, detail: str = "", device_id: str = "", kind: str = "", message_id: str = ""
) -> DeadLetter:
    return DeadLetter(
        received_at=raw.received_at,
        topic=raw.topic[:300],
        device_id=device_id[:63],
        kind=kind[:32],
        message_id=message_id[:64],
        reason=reason,
        detail=detail[:2000],
        payload=bytes(raw.payload[:DEAD_LETTER_PAYLOAD_BYTES]),
        payload_size=len(raw.payload),
    )


def _device_id_guess(topic: str) -> str:
    """The device id segment of a refused topic, if it looks like one (for the dead-letter row)."""
    parts = topic.split("/")
    return parts[3] if len(parts) > 3 and topics.is_device_id(parts[3]) else ""


def _text_array(values: Iterable[str]) -> str:
    return '{"' + '","'.join(values) + '"}'


def _float_array(values: Iterable[float]) -> str:
    return "{" + ",".join(map(repr, values)) + "}"


def registered_devices(device_ids: set[str]) -> dict[str, tuple[int, str, dt.datetime | None]]:
    """device id -> (pk, state, last_seen_at) of the registered ones among `device_ids`, in one query."""
    if not device_ids:
        return {}
    if connection.vendor == "postgresql":
        # One array parameter instead of an IN list of hundreds: Django prepares each value and the
        # driver splits the query at each placeholder (bench/README.md, "Ingest"). Device ids are
        # [a-z0-9-] (protocol.topics), so the array literal needs no escaping.
        table = connection.ops.quote_name(Device._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT device_id, id, state, last_seen_at FROM {table} WHERE device_id = ANY(%s::varchar[])",  # noqa: S608 - table name from the model
                [_text_array(sorted(device_ids))],
            )
            rows = cursor.fetchall()
    else:
        rows = Device.objects.filter(device_id__in=device_ids).values_list(
            "device_id", "pk", "state", "last_seen_at"
        )
    return {device_id: (pk, state, last) for device_id, pk, state, last in rows}


def claim_message_ids(pairs: Iterable[tuple[str, str, dt.datetime]]) -> set[tuple[str, str]]:
    """Record (device id, message id) pairs as processed; return those that were not recorded before."""
    rows = list(pairs)
    table = connection.ops.quote_name(ProcessedMessage._meta.db_table)
    claimed: set[tuple[str, str]] = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and rows:
            # Three array parameters instead of 3 x N (the driver's per-parameter query handling
            # was a quarter of the batch's CPU), written as array literals by str.join: the
            # driver's list dumper cost a Python call per element. The ids need no escaping
            # inside the quotes: device and message ids are [A-Za-z0-9._:-] (protocol._base).
            device_ids, message_ids, received = zip(*rows, strict=True)
            cursor.execute(
                f"INSERT INTO {table} (device_id, message_id, received_at) "  # noqa: S608 - table name from the model, values bound
                "SELECT d, m, to_timestamp(t) FROM unnest(%s::varchar[], %s::varchar[], %s::float8[]) AS u(d, m, t) "
                "ON CONFLICT (device_id, message_id) DO NOTHING RETURNING device_id, message_id",
                [
                    _text_array(device_ids),
                    _text_array(message_ids),
                    _float_array(r.timestamp() for r in received),
                ],
            )
            return {(d, m) for d, m in cursor.fetchall()}
        for start in range(0, len(rows), _CLAIM_CHUNK):
            chunk = rows[start : start + _CLAIM_CHUNK]
            values = ", ".join(["(%s, %s, %s)"] * len(chunk))
            params: list = []
            for device_id, message_id, received_at in chunk:
                params += [device_id, message_id, received_at]
            cursor.execute(
                f"INSERT INTO {table} (device_id, message_id, received_at) VALUES {values} "  # noqa: S608 - table name from the model, values bound
                "ON CONFLICT (device_id, message_id) DO NOTHING RETURNING device_id, message_id",
                params,
            )
            claimed.update((d, m) for d, m in cursor.fetchall())
    return claimed


def _dispatch(kind: str, items: list[Inbound], dead: list[DeadLetter], raws: dict[int, RawMessage]) -> bool:
    """Hand one kind's items to its handler in a savepoint; dead-letter them if it is missing or raises."""

    def refuse(reason: str, detail: str) -> None:
        for item in items:
            dead.append(_dead(raws[id(item)], reason, detail, item.device_id, kind, item.message.id))

    try:
        handler = dispatch.resolve(kind)
    except Exception as exc:  # a handler module that fails to import is that kind's bug, not the batch's
        log.exception("handler for up/%s failed to import", kind)
        refuse(DeadLetterReason.HANDLER_ERROR, f"import: {type(exc).__name__}: {exc}")
        return False
    if handler is None:
        refuse(DeadLetterReason.NO_HANDLER, f"no handler installed for up/{kind}")
        return False
    try:
        with transaction.atomic():
            handler(items=items)
    except DB_UNAVAILABLE:
        raise
    except Exception as exc:  # the process never dies on input: the kind's messages are kept aside
        log.exception("handler for up/%s raised on %d message(s)", kind, len(items))
        refuse(DeadLetterReason.HANDLER_ERROR, f"{type(exc).__name__}: {exc}")
        return False
    return True


def ingest_batch(
    *, messages: list[RawMessage], clock: Callable[[], dt.datetime] = timezone.now
) -> BatchResult:
    """Decode, refuse, deduplicate and dispatch one batch in one transaction.

    Raises only when the database is unavailable (then nothing of the batch is
    committed and the caller retries it) or on a bug in the ingest itself.
    """
    result = BatchResult(received=len(messages))
    dead: list[DeadLetter] = []
    decoded: list[tuple[RawMessage, str, str, object]] = []
    for raw in messages:
        try:
            topic = topics.parse(raw.topic)
            if topic.direction != "up":
                raise TopicError("topic", "devices publish on up/ only")
        except TopicError as exc:
            dead.append(_dead(raw, DeadLetterReason.TOPIC, exc.detail, _device_id_guess(raw.topic)))
            continue
        try:
            message = decode_up(topic.kind, raw.payload)
        except MessageError as exc:
            dead.append(_dead(raw, exc.reason, exc.detail, topic.device_id, topic.kind))
            continue
        decoded.append((raw, topic.device_id, topic.kind, message))

    with transaction.atomic():
        known = registered_devices({d for _, d, _, _ in decoded})
        accepted: list[tuple[RawMessage, str, str, object, int]] = []
        for raw, device_id, kind, message in decoded:
            entry = known.get(device_id)
            if entry is None:
                reason, detail = DeadLetterReason.UNKNOWN_DEVICE, f"no device {device_id!r} is registered"
            elif entry[1] == DeviceState.DECOMMISSIONED:
                reason, detail = DeadLetterReason.DECOMMISSIONED, f"device {device_id!r} is decommissioned"
            else:
                accepted.append((raw, device_id, kind, message, entry[0]))
                continue
            dead.append(_dead(raw, reason, detail, device_id, kind, message.id))

        # Deduplicate: inside the batch first (the same redelivery twice), then against the table.
        unique: dict[tuple[str, str], tuple] = {}
        for entry in accepted:
            unique.setdefault((entry[1], entry[3].id), entry)
        claimed = claim_message_ids(
            sorted(
                (device_id, message.id, raw.received_at) for raw, device_id, _, message, _ in unique.values()
            )
        )
        result.duplicates = len(accepted) - len(claimed)

        # Any accepted message, new or redelivered, means the device is alive.
        seen: dict[int, dt.datetime] = {}
        for raw, _, _, _, pk in accepted:
            if pk not in seen or raw.received_at > seen[pk]:
                seen[pk] = raw.received_at
        if seen:
            last_seen = {pk: last for pk, _, last in known.values()}
            revived = devices_mark_seen(
                seen=seen, resolution_s=settings.INGEST_SEEN_RESOLUTION_S, last_seen=last_seen
            )
            if revived:
                status_mark_resumed(device_pks=revived, seen_at=max(seen.values()))

        groups: dict[str, list[Inbound]] = defaultdict(list)
        raws: dict[int, RawMessage] = {}
        for key, (raw, device_id, kind, message, pk) in unique.items():
            if key not in claimed:
                continue
            item = Inbound(
                device_pk=pk,
                device_id=device_id,
                kind=kind,
                message=message,
                received_at=raw.received_at,
                topic=raw.topic,
            )
            raws[id(item)] = raw
            groups[kind].append(item)
        handled: dict[str, list[Inbound]] = {}
        for kind in sorted(groups):
            if _dispatch(kind, groups[kind], dead, raws):
                handled[kind] = groups[kind]
        if dead:
            DeadLetter.objects.bulk_create(dead)

    now = time.time()
    for kind, items in handled.items():
        result.committed[kind] = len(items)
        result.lag_s.extend(now - item.message.ts for item in items)
    for letter in dead:
        result.dead_letters[letter.reason] = result.dead_letters.get(letter.reason, 0) + 1
    return result


def dead_letter_record(*, raw: RawMessage, reason: str, detail: str) -> DeadLetter:
    """Keep one message aside on its own (the ingest could not process it even alone)."""
    letter = _dead(raw, reason, detail, _device_id_guess(raw.topic))
    letter.save()
    return letter


def handler_dead_letters_record(refusals: list[tuple[Inbound, str, str, bytes]]) -> None:
    """What a kind handler refuses (item, reason, detail, payload kept), beside the ingest's own
    refusals so an operator sees them in one place. Runs in the handler's savepoint."""
    DeadLetter.objects.bulk_create(
        DeadLetter(
            received_at=item.received_at,
            topic=item.topic,
            device_id=item.device_id,
            kind=item.kind,
            message_id=item.message.id,
            reason=reason,
            detail=detail,
            payload=payload[:DEAD_LETTER_PAYLOAD_BYTES],
            payload_size=len(payload),
        )
        for item, reason, detail, payload in refusals
    )


def is_db_unavailable(exc: BaseException) -> bool:
    """True for a database outage (retry the batch), False for anything the input caused."""
    return isinstance(exc, DB_UNAVAILABLE) or (
        isinstance(exc, DatabaseError) and connection.connection is None
    )
