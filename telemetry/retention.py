"""Retention of everything telemetry keeps: raw samples, rollups, processed message ids, dead letters."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import connection
from django.utils import timezone

from telemetry.metrics.partitions import metrics_partitions_drop, partitioned
from telemetry.models import (
    DeadLetter,
    MetricRollup,
    MetricSample,
    ModelQualityRollup,
    ModelQualitySample,
    ProcessedMessage,
)
from telemetry.models.metrics import Resolution


def _days(n: int, now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(days=n)


def telemetry_retention(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Delete what is older than its retention setting; returns how much went, by kind."""
    now = now or timezone.now()
    raw_cutoff = _days(settings.METRICS_RAW_RETENTION_DAYS, now)
    removed: dict[str, int] = {}
    if partitioned():
        # Whole days first (DROP TABLE), then the partial oldest day and the default partition.
        removed["sample_partitions"] = len(metrics_partitions_drop(before=raw_cutoff.date()))
    removed["samples"] = MetricSample.objects.filter(ts__lt=raw_cutoff)._raw_delete(connection.alias)
    removed["rollups_1m"] = MetricRollup.objects.filter(
        resolution=Resolution.MINUTE, bucket__lt=_days(settings.METRICS_1M_RETENTION_DAYS, now)
    )._raw_delete(connection.alias)
    removed["rollups_1h"] = MetricRollup.objects.filter(
        resolution=Resolution.HOUR, bucket__lt=_days(settings.METRICS_1H_RETENTION_DAYS, now)
    )._raw_delete(connection.alias)
    # Model quality keeps the metrics' retention: raw windows like raw samples, hourly like 1h rollups.
    removed["quality_windows"] = ModelQualitySample.objects.filter(end__lt=raw_cutoff)._raw_delete(
        connection.alias
    )
    removed["quality_rollups"] = ModelQualityRollup.objects.filter(
        bucket__lt=_days(settings.METRICS_1H_RETENTION_DAYS, now)
    )._raw_delete(connection.alias)
    # A processed id only has to outlive any redelivery of its message (broker session, device queue).
    removed["processed_ids"] = ProcessedMessage.objects.filter(
        received_at__lt=_days(settings.INGEST_PROCESSED_RETENTION_DAYS, now)
    )._raw_delete(connection.alias)
    removed["dead_letters"] = DeadLetter.objects.filter(
        received_at__lt=_days(settings.DEAD_LETTER_RETENTION_DAYS, now)
    )._raw_delete(connection.alias)
    return removed
