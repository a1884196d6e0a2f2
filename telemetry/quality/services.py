"""Recording model quality windows from up/telemetry, and their hourly rollups."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import msgspec
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import set_json_dumps

from telemetry.ingest.types import Inbound
from telemetry.models import ModelQualityRollup, ModelQualitySample
from telemetry.quality.summary import QualitySummary

_UTC = dt.UTC
_FIELDS = (
    "frames",
    "dropped_frames",
    "latency_p50_ms",
    "latency_p95_ms",
    "score_mean",
    "crashes",
    "cpu_pct",
    "temp_c",
    "matched",
    "reference",
    "extra",
)


_COLUMNS = ("device_id", "model", "version", "role", "start", "end", "seconds", "detections", *_FIELDS)
# COPY's binary format with the types given, as the metric samples go (telemetry.metrics.services).
_COPY_TYPES = (
    "bigint", "varchar", "varchar", "varchar", "timestamptz", "timestamptz", "float8", "jsonb",
    "bigint", "bigint", "float8", "float8", "float8", "integer", "float8", "float8", "bigint", "bigint", "bigint",
)  # fmt: skip
_json = msgspec.json.Encoder()


def quality_record(*, items: list[Inbound], now: dt.datetime | None = None) -> int:
    """Store the quality windows of a batch of up/telemetry messages (one bulk insert); returns the count.

    Window times go onto the server clock the way metric samples do (telemetry.metrics.services):
    shifted by the message's skew when the device clock is off, clamped to the receive time.
    """
    now = now or max(item.received_at for item in items)
    tolerance = settings.INGEST_CLOCK_SKEW_S
    oldest = (now - dt.timedelta(days=settings.METRICS_RAW_RETENTION_DAYS)).timestamp()
    rows = []
    for item in items:
        quality = getattr(item.message, "quality", None)
        if not quality:
            continue
        received = item.received_at.timestamp()
        skew = received - item.message.ts
        shift = skew if abs(skew) > tolerance else 0.0
        for q in quality:
            end = min(q.end + shift, received)
            start = min(q.start + shift, end)
            if end < oldest:
                continue
            rows.append(
                (
                    item.device_pk,
                    q.model,
                    q.version,
                    q.role,
                    dt.datetime.fromtimestamp(start, _UTC),
                    dt.datetime.fromtimestamp(end, _UTC),
                    q.end - q.start,
                    dict(q.detections),
                    *(getattr(q, f) for f in _FIELDS),
                )
            )
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        q = connection.ops.quote_name
        table = q(ModelQualitySample._meta.db_table)
        with connection.cursor() as cursor:
            set_json_dumps(_json.encode, context=cursor.cursor)
            columns = ", ".join(q(c) for c in _COLUMNS)
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
    else:
        ModelQualitySample.objects.bulk_create(
            [ModelQualitySample(**dict(zip(_COLUMNS, row, strict=True))) for row in rows], batch_size=1000
        )
    return len(rows)


def _hour(when: dt.datetime) -> dt.datetime:
    return when.astimezone(_UTC).replace(minute=0, second=0, microsecond=0)


@transaction.atomic
def quality_rollup(*, start: dt.datetime, end: dt.datetime) -> int:
    """(Re)compute the hourly rollups of every hour in [start, end), aligned down; returns rows written.

    Idempotent like the metric rollups: an hour's rows are deleted and written again from the windows
    that ended in it, so late windows are counted on the next run.
    """
    start, end = _hour(start), _hour(end)
    if end <= start:
        return 0
    ModelQualityRollup.objects.filter(bucket__gte=start, bucket__lt=end).delete()
    groups: dict[tuple, QualitySummary] = defaultdict(QualitySummary)
    windows = ModelQualitySample.objects.filter(end__gte=start, end__lt=end).values(
        "device_id", "model", "version", "role", "end", "seconds", "detections", *_FIELDS
    )
    for row in windows.iterator(chunk_size=5000):
        groups[(row["device_id"], row["model"], row["version"], row["role"], _hour(row["end"]))].add(row)
    ModelQualityRollup.objects.bulk_create(
        (
            ModelQualityRollup(
                device_id=device,
                model=model,
                version=version,
                role=role,
                bucket=bucket,
                windows=summary.windows,
                **summary.figures(),
            )
            for (device, model, version, role, bucket), summary in groups.items()
        ),
        batch_size=1000,
    )
    return len(groups)


def quality_rollup_recent(*, now: dt.datetime | None = None, hours: int = 2) -> int:
    """What the beat task runs: the last `hours` hours and the running one (refined each run)."""
    now = now or timezone.now()
    end = _hour(now) + dt.timedelta(hours=1)
    return quality_rollup(start=end - dt.timedelta(hours=hours + 1), end=end)
