"""Reads of metric time series for one device, at raw, 1-minute or 1-hour resolution."""

from __future__ import annotations

import datetime as dt
from typing import Any

from devices.models import Device
from telemetry.models import MetricRollup, MetricSample
from telemetry.models.metrics import Resolution

# Default and largest time window per resolution: bounded so one request stays cheap.
DEFAULT_WINDOW = {
    Resolution.RAW: dt.timedelta(hours=1),
    Resolution.MINUTE: dt.timedelta(hours=24),
    Resolution.HOUR: dt.timedelta(days=30),
}
MAX_WINDOW = {
    Resolution.RAW: dt.timedelta(days=2),
    Resolution.MINUTE: dt.timedelta(days=14),
    Resolution.HOUR: dt.timedelta(days=400),
}
MAX_POINTS = 10_000


def metric_series(
    *,
    device: Device,
    resolution: str,
    metrics: list[str],
    after: dt.datetime,
    before: dt.datetime,
    limit: int = MAX_POINTS,
) -> tuple[list[dict[str, Any]], bool]:
    """Points in [after, before), oldest first, and whether the list was cut at `limit`.

    raw: {"ts", <metric>: value}; 1m / 1h: {"ts", "samples", <metric>_avg, <metric>_max}.
    Uses the (device, ts) / (device, resolution, bucket) indexes; one query.
    """
    if resolution == Resolution.RAW:
        rows = list(
            MetricSample.objects.filter(device_id=device.pk, ts__gte=after, ts__lt=before)
            .order_by("ts")
            .values("ts", *metrics)[: limit + 1]
        )
    else:
        fields = [f"{m}_{agg}" for m in metrics for agg in ("avg", "max")]
        rows = [
            {"ts": row.pop("bucket"), **row}
            for row in MetricRollup.objects.filter(
                device_id=device.pk, resolution=resolution, bucket__gte=after, bucket__lt=before
            )
            .order_by("bucket")
            .values("bucket", "samples", *fields)[: limit + 1]
        ]
    return rows[:limit], len(rows) > limit


def metric_class_series(
    *, device: Device, after: dt.datetime, before: dt.datetime, bucket_s: int = 0, limit: int = MAX_POINTS
) -> dict[str, Any]:
    """Queue depth and bytes sent per uplink class over [after, before), from raw samples.

    {"ts": [...], "queue_depth": {class: [...]}, "bytes_sent": {class: [...]}}; with `bucket_s`,
    samples are summed (bytes) or averaged-as-max (queue depth) per bucket. Rollups do not keep
    the per-class maps, so this reads raw samples: callers keep the window within raw retention.
    """
    rows = (
        MetricSample.objects.filter(device_id=device.pk, ts__gte=after, ts__lt=before)
        .order_by("ts")
        .values_list("ts", "queue_depth", "bytes_sent")[:limit]
    )
    buckets: dict[float, tuple[dict[str, float], dict[str, float]]] = {}
    for ts, depth, sent in rows:
        key = ts.timestamp()
        if bucket_s:
            key -= key % bucket_s
        queue, sent_sum = buckets.setdefault(key, ({}, {}))
        for cls, n in (depth or {}).items():
            queue[cls] = max(queue.get(cls, 0), float(n))
        for cls, n in (sent or {}).items():
            sent_sum[cls] = sent_sum.get(cls, 0) + float(n)
    stamps = sorted(buckets)
    classes_q = sorted({c for q, _ in buckets.values() for c in q})
    classes_b = sorted({c for _, b in buckets.values() for c in b})
    return {
        "ts": stamps,
        "queue_depth": {c: [buckets[t][0].get(c) for t in stamps] for c in classes_q},
        "bytes_sent": {c: [buckets[t][1].get(c) for t in stamps] for c in classes_b},
    }
