"""Per-device daily data usage by uplink class, in the device's local day (its site's time zone).

Two sources: bytes the device reports in telemetry samples (`bytes_sent`, stored by the
metrics ingest in MetricSample) and media bytes the server verified itself (DataUsage).
A device may count its media uploads in `bytes_sent` too, so for media classes the larger
of the two counts is used, never their sum.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict

from django.db.models import F
from django.utils import timezone

from devices.models import Device
from protocol.vocab import UPLINK_CLASSES
from telemetry.models.metrics import MetricSample
from telemetry.models.policies import DataUsage

MEDIA_CLASS = {"snapshot": "thumbnail", "clip": "clip"}  # media kind -> uplink class
MEDIA_CLASSES = frozenset(MEDIA_CLASS.values())


def device_tz(device: Device) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(device.site.timezone if device.site_id else "UTC")


def local_day(device: Device, at: dt.datetime | None = None) -> dt.date:
    return (at or timezone.now()).astimezone(device_tz(device)).date()


def data_usage_add(*, device: Device, uplink_class: str, nbytes: int, at: dt.datetime | None = None) -> None:
    """Count verified bytes (atomic increment, safe across ingest replicas)."""
    day = local_day(device, at)
    row, created = DataUsage.objects.get_or_create(
        device=device, day=day, uplink_class=uplink_class, defaults={"bytes": nbytes}
    )
    if not created:
        DataUsage.objects.filter(pk=row.pk).update(bytes=F("bytes") + nbytes)


def data_usage(*, device: Device, days: int = 7, today: dt.date | None = None) -> list[dict]:
    """[{day, by_class: {class: {"reported", "uploaded", "bytes"}}, "bytes"}] for the last `days` local days."""
    tz = device_tz(device)
    today = today or local_day(device)
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    reported: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    samples = MetricSample.objects.filter(device_id=device.pk, ts__gte=start, ts__lt=end).values_list(
        "ts", "bytes_sent"
    )
    for ts, sent in samples.iterator(chunk_size=2000):
        day = ts.astimezone(tz).date()
        for cls, n in (sent or {}).items():
            reported[day][cls] += int(n)
    uploaded: dict[dt.date, dict[str, int]] = defaultdict(dict)
    for row in DataUsage.objects.filter(device=device, day__gte=first, day__lte=today):
        uploaded[row.day][row.uplink_class] = row.bytes
    out = []
    for offset in range(days):
        day = today - dt.timedelta(days=offset)
        by_class = {}
        for cls in UPLINK_CLASSES:
            r, u = reported[day].get(cls, 0), uploaded[day].get(cls, 0)
            total = max(r, u) if cls in MEDIA_CLASSES else r + u
            if r or u:
                by_class[cls] = {"reported": r, "uploaded": u, "bytes": total}
        out.append({"day": day, "by_class": by_class, "bytes": sum(c["bytes"] for c in by_class.values())})
    return out


def bytes_used_today(*, device: Device) -> int:
    return data_usage(device=device, days=1)[0]["bytes"]
