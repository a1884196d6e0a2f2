"""1-minute and 1-hour rollups (average and maximum per metric per device), recomputed idempotently.

Rolling up a window deletes that window's rollup rows and inserts them again from the
raw samples with one INSERT ... SELECT ... GROUP BY, in one transaction: running it
twice, or again after late samples arrive, gives the rows the raw data says.
"""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction
from django.db.models import Avg, Count, Max
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from telemetry.models import MetricRollup, MetricSample
from telemetry.models.metrics import NUMERIC_METRICS, Resolution

BUCKET = {Resolution.MINUTE: dt.timedelta(minutes=1), Resolution.HOUR: dt.timedelta(hours=1)}
_TRUNC = {Resolution.MINUTE: TruncMinute, Resolution.HOUR: TruncHour}
_AGGREGATES = [f"{m}_{agg}" for m in NUMERIC_METRICS for agg in ("avg", "max")]


def floor_bucket(when: dt.datetime, resolution: str) -> dt.datetime:
    size = int(BUCKET[resolution].total_seconds())
    epoch = int(when.timestamp()) // size * size
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


@transaction.atomic
def metrics_rollup(*, resolution: str, start: dt.datetime, end: dt.datetime) -> int:
    """(Re)compute the rollup rows of every bucket in [start, end), aligned down; returns rows written."""
    start, end = floor_bucket(start, resolution), floor_bucket(end, resolution)
    if end <= start:
        return 0
    MetricRollup.objects.filter(resolution=resolution, bucket__gte=start, bucket__lt=end).delete()
    aggregates = {}
    for metric in NUMERIC_METRICS:
        aggregates[f"{metric}_avg"] = Avg(metric)
        aggregates[f"{metric}_max"] = Max(metric)
    grouped = (
        MetricSample.objects.filter(ts__gte=start, ts__lt=end)
        .annotate(bucket=_TRUNC[resolution]("ts", tzinfo=dt.UTC))
        .values("device_id", "bucket")
        .annotate(samples=Count("id"), **aggregates)
        .order_by()
    )
    sql, params = grouped.query.sql_with_params()
    q = connection.ops.quote_name
    columns = ["device_id", "bucket", "samples", *_AGGREGATES]
    table = q(MetricRollup._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (resolution, {', '.join(q(c) for c in columns)}) "  # noqa: S608 - names from the models
            f"SELECT %s, {', '.join('agg.' + q(c) for c in columns)} FROM ({sql}) agg",
            [resolution, *params],
        )
        return cursor.rowcount


# How far back each scheduled run recomputes, so samples that arrive late are counted.
LATE_MINUTES = 3
LATE_HOURS = 2


def metrics_rollup_recent(*, resolution: str, now: dt.datetime | None = None) -> int:
    """What the beat tasks run: the last complete minutes, or the last hours including the current one."""
    now = now or timezone.now()
    if resolution == Resolution.MINUTE:
        end = floor_bucket(now, resolution)  # complete minutes only
        return metrics_rollup(resolution=resolution, start=end - LATE_MINUTES * BUCKET[resolution], end=end)
    end = floor_bucket(now, resolution) + BUCKET[resolution]  # the running hour too, refined each run
    return metrics_rollup(resolution=resolution, start=end - (LATE_HOURS + 1) * BUCKET[resolution], end=end)
