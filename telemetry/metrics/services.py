"""Writing metric samples: the bulk path the ingest takes (COPY on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import msgspec
from django.conf import settings
from django.db import connection
from prometheus_client import Counter
from psycopg.types.json import set_json_dumps

from telemetry.ingest.types import Inbound
from telemetry.models import MetricSample

SAMPLES = Counter("fleet_ingest_metric_samples_total", "Metric samples stored", ["result"])

COLUMNS = (
    "device_id",
    "ts",
    "cpu_pct",
    "mem_pct",
    "temp_c",
    "fps",
    "inference_ms",
    "disk_free_mb",
    "link",
    "queue_depth",
    "bytes_sent",
)
# COPY's binary format, types given up front: no per-value type lookup and no float-to-text
# formatting, about half the client CPU of the text format (the ingest's committer is CPU-bound).
_COPY_TYPES = ("bigint", "timestamptz", *["float8"] * 6, "varchar", "jsonb", "jsonb")
_json = msgspec.json.Encoder()
_UTC = dt.UTC


def sample_rows(items: list[Inbound], *, now: dt.datetime) -> Iterator[tuple]:
    """One row tuple (COLUMNS order) per sample, with timestamps on the server clock.

    A device whose clock is off by more than INGEST_CLOCK_SKEW_S (no RTC: 1970) has
    every sample shifted by the offset seen on its message. Samples older than the raw
    retention are dropped (retention would delete them anyway, and their day's
    partition may be gone); samples in the future are clamped to the receive time.
    """
    tolerance = settings.INGEST_CLOCK_SKEW_S
    oldest = (now - dt.timedelta(days=settings.METRICS_RAW_RETENTION_DAYS)).timestamp()
    for item in items:
        received = item.received_at.timestamp()
        skew = received - item.message.ts
        shift = skew if abs(skew) > tolerance else 0.0
        for s in item.message.samples:
            ts = min(s.ts + shift, received)
            if ts < oldest:
                SAMPLES.labels("too_old").inc()
                continue
            yield (
                item.device_pk,
                dt.datetime.fromtimestamp(ts, _UTC),
                s.cpu_pct,
                s.mem_pct,
                s.temp_c,
                s.fps,
                s.inference_ms,
                s.disk_free_mb,
                s.link,
                s.queue_depth,
                s.bytes_sent,
            )


def samples_record(*, items: list[Inbound], now: dt.datetime | None = None) -> int:
    """Store every sample of a batch of up/telemetry messages in one statement; returns the count."""
    now = now or max(item.received_at for item in items)
    rows = list(sample_rows(items, now=now))
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(MetricSample._meta.db_table)
        # COPY: several times the rows/s of a multi-row INSERT (no per-row SQL, no RETURNING).
        with connection.cursor() as cursor:
            set_json_dumps(_json.encode, context=cursor.cursor)  # msgspec, not the json module
            with cursor.cursor.copy(
                f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(_COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
    else:
        MetricSample.objects.bulk_create(
            [MetricSample(**dict(zip(COLUMNS, row, strict=True))) for row in rows], batch_size=500
        )
    SAMPLES.labels("stored").inc(len(rows))
    return len(rows)
