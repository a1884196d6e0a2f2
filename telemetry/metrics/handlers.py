"""up/telemetry handler (see telemetry.ingest.types for the contract)."""

from telemetry.ingest.types import Inbound
from telemetry.metrics.services import samples_record
from telemetry.quality.services import quality_record


def handle_telemetry(*, items: list[Inbound]) -> None:
    samples_record(items=items)
    quality_record(items=items)
