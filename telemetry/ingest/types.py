"""What moves through the ingest, and the contract of a kind handler.

A kind handler is a function

    def handle_<kind>(*, items: list[Inbound]) -> None

named in `telemetry.ingest.dispatch.HANDLERS`. It gets every new (not yet processed)
message of its kind from one batch, in arrival order, already decoded and from
registered, non-decommissioned devices. It runs inside the batch's transaction (in
a savepoint of its own), writes through services, and should use bulk queries: a
batch holds up to INGEST_BATCH_MAX messages. It must not publish MQTT directly:
use `fleet.mqtt.publish_on_commit`, which fires only if the batch commits.

If it raises, its savepoint is rolled back and its messages are dead-lettered with
reason "handler_error" (the rest of the batch commits). A database outage
(OperationalError) is not the handler's fault: the whole batch is retried, unacked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import NamedTuple

from protocol._base import Message


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One MQTT PUBLISH as received, before any parsing."""

    topic: str
    payload: bytes
    received_at: dt.datetime  # server clock, aware UTC
    # For acknowledging it afterwards: paho's mid is valid only on the connection
    # (generation) that received it.
    mid: int = 0
    qos: int = 1
    generation: int = 0


class Delivery(NamedTuple):
    """A PUBLISH as the receiving thread hands it over: cheap to make there and to pickle to the committer."""

    topic: str
    payload: bytes
    received_ts: float  # server clock, time.time()
    mid: int
    qos: int
    generation: int

    def raw(self) -> RawMessage:
        received_at = dt.datetime.fromtimestamp(self.received_ts, dt.UTC)
        return RawMessage(self.topic, self.payload, received_at, self.mid, self.qos, self.generation)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A decoded message from a known device, as a kind handler receives it."""

    device_pk: int
    device_id: str
    kind: str
    message: Message  # the protocol struct of the kind (protocol.messages.UP_TYPES[kind])
    received_at: dt.datetime
    topic: str


@dataclass
class BatchResult:
    """What one batch did; the runner turns it into Prometheus counters."""

    received: int = 0
    committed: dict[str, int] = field(default_factory=dict)  # kind -> new messages handled
    duplicates: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)  # reason -> count
    lag_s: list[float] = field(default_factory=list)  # commit time - device ts, per handled message
    seconds: float = 0.0  # to process and commit it
    db_retries: int = 0  # attempts that found the database unavailable before this one committed
    one_by_one: bool = False  # the batch raised (a bug, not bad input) and was committed message by message
