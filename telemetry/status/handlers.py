"""up/status handler (see telemetry.ingest.types for the contract)."""

from telemetry.ingest.types import Inbound
from telemetry.status.services import status_apply


def handle_status(*, items: list[Inbound]) -> None:
    status_apply(items=items)
