"""MQTT handlers for up/ota, named in telemetry.ingest.dispatch.HANDLERS: decoded reports -> services."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ota.services import report_apply, reports_apply
from protocol.up import OtaReport

if TYPE_CHECKING:
    from telemetry.ingest.types import Inbound


def handle_reports(*, items: list[Inbound]) -> None:
    """The ingest's batch of up/ota messages (arrival order, inside the batch transaction)."""
    reports_apply(
        reports=[(item.device_id, item.message, item.received_at) for item in items],  # type: ignore[misc]
        device_pks=[item.device_pk for item in items],
    )


def handle(*, device_id: str, message: OtaReport, received_at: dt.datetime | None = None) -> bool:
    """One decoded up/ota report; True if the device's update moved forward."""
    return report_apply(device_id=device_id, report=message, now=received_at)
