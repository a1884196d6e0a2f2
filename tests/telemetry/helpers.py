"""Building device messages the way a device does: protocol.messages.make + encode, protocol.topics."""

from __future__ import annotations

import time

from django.utils import timezone

from fleet.demo import IngestComponent
from protocol import topics
from protocol.messages import Status, Telemetry, encode, make
from telemetry.ingest.types import RawMessage


def sample(ts: float | None = None, **fields) -> dict:
    values = {"ts": time.time() if ts is None else ts, "cpu_pct": 40.0, "mem_pct": 50.0, "link": "wifi"}
    values.update(fields)
    return values


def telemetry_payload(samples: list[dict] | None = None, **envelope) -> bytes:
    return encode(make(Telemetry, samples=samples or [sample()], **envelope))


def status_payload(state: str = "online", **fields) -> bytes:
    fields.setdefault("agent_version", "1.4.0")
    return encode(make(Status, state=state, **fields))


def raw(
    device_id: str, kind: str, payload: bytes, *, topic: str | None = None, received_at=None
) -> RawMessage:
    return RawMessage(
        topic=topic or topics.up(device_id, kind), payload=payload, received_at=received_at or timezone.now()
    )


class IngestThread(IngestComponent):
    """The demo's ingest thread (the `manage.py ingest` runner) in the test process."""

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        assert not self.thread.is_alive(), "ingest did not stop"
