"""Reads behind the dashboard: cameras with problems and the uplink used today.

Each list is bounded (`limit`) and each query uses an index, so the dashboard costs the same
at 100 or 100,000 cameras (bench/ui.py measures it).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

from devices.models import Device, DeviceState, Site
from ota.models import FAILED_STATES, DeviceUpdate
from telemetry.models import DataUsage, MetricRollup, MetricSample
from telemetry.models.metrics import Resolution
from telemetry.policies.resolve import PolicyIndex

MIB = 1024 * 1024


@dataclass(frozen=True)
class Problem:
    device: Device
    kind: str  # offline, hot, backlog, update_failed, over_budget
    detail: str
    at: dt.datetime | None = None


def _devices(pks) -> dict[int, Device]:
    return Device.objects.select_related("site").in_bulk(list(pks))


def offline_long(*, limit: int = 10, now: dt.datetime | None = None) -> list[Problem]:
    """Active cameras offline for longer than DASHBOARD_OFFLINE_AFTER_S, the longest first."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.DASHBOARD_OFFLINE_AFTER_S)
    rows = (
        Device.objects.filter(state=DeviceState.ACTIVE, status__online=False, status__since__lt=cutoff)
        .select_related("site", "status")
        .order_by("status__since")[:limit]
    )
    return [Problem(d, "offline", f"offline since ({d.status.reason})", d.status.since) for d in rows]


def hot(*, limit: int = 10, now: dt.datetime | None = None) -> list[Problem]:
    """Cameras whose last minutes ran at DASHBOARD_HOT_C or more (1-minute rollups)."""
    now = now or timezone.now()
    rows = list(
        MetricRollup.objects.filter(
            resolution=Resolution.MINUTE,
            bucket__gte=now - dt.timedelta(minutes=5),
            temp_c_max__gte=settings.DASHBOARD_HOT_C,
        )
        .order_by("-temp_c_max")
        .values_list("device_id", "temp_c_max", "bucket")[: limit * 5]
    )
    seen: dict[int, tuple[float, dt.datetime]] = {}
    for pk, temp, bucket in rows:
        seen.setdefault(pk, (temp, bucket))
    devices = _devices(seen)
    return [
        Problem(devices[pk], "hot", f"{temp:.0f} °C", bucket)
        for pk, (temp, bucket) in list(seen.items())[:limit]
        if pk in devices
    ]


def backlog(*, limit: int = 10, now: dt.datetime | None = None) -> list[Problem]:
    """Cameras whose last sample, within 2 minutes, reports DASHBOARD_BACKLOG_ITEMS queued items or more."""
    now = now or timezone.now()
    recent = MetricSample.objects.filter(ts__gte=now - dt.timedelta(minutes=2)).order_by("-ts")
    worst: dict[int, tuple[int, dt.datetime]] = {}
    for pk, depth, ts in recent.values_list("device_id", "queue_depth", "ts")[:5000]:
        if pk in worst:
            continue
        worst[pk] = (sum(int(v) for v in (depth or {}).values()), ts)
    over = sorted(
        ((pk, n, ts) for pk, (n, ts) in worst.items() if n >= settings.DASHBOARD_BACKLOG_ITEMS),
        key=lambda r: -r[1],
    )[:limit]
    devices = _devices(pk for pk, _, _ in over)
    return [Problem(devices[pk], "backlog", f"{n} items queued", ts) for pk, n, ts in over if pk in devices]


def update_failed(*, limit: int = 10, now: dt.datetime | None = None) -> list[Problem]:
    """Cameras whose update failed, rolled back or timed out in the last day."""
    now = now or timezone.now()
    rows = (
        DeviceUpdate.objects.filter(state__in=FAILED_STATES, finished_at__gte=now - dt.timedelta(days=1))
        .select_related("device__site", "deployment")
        .order_by("-finished_at")[:limit]
    )
    return [
        Problem(u.device, "update_failed", f"{u.state} in {u.deployment.name}: {u.reason}", u.finished_at)
        for u in rows
    ]


def today_q(now: dt.datetime | None = None) -> Q:
    """DataUsage rows of "today": each camera's local day (its site's zone, UTC without a site).

    One term per time zone in use (a handful), so the sum stays one indexed query."""
    now = now or timezone.now()
    q = Q(device__site__isnull=True, day=now.astimezone(dt.UTC).date())
    for tz in Site.objects.values_list("timezone", flat=True).distinct():
        q |= Q(device__site__timezone=tz, day=now.astimezone(zoneinfo.ZoneInfo(tz)).date())
    return q


def usage_today(*, limit: int = 10) -> list[dict]:
    """The cameras that uploaded most today (verified bytes), each against its own daily budget."""
    rows = list(
        DataUsage.objects.filter(today_q())
        .values("device_id")
        .annotate(total=Sum("bytes"))
        .order_by("-total")[:limit]
    )
    devices = (
        Device.objects.prefetch_related("groups")
        .select_related("site")
        .in_bulk([r["device_id"] for r in rows])
    )
    index = PolicyIndex()
    out = []
    for r in rows:
        device = devices.get(r["device_id"])
        if device is None:
            continue
        policy = index.resolve(device)
        budget = policy.daily_budget_mb * MIB if policy and policy.daily_budget_mb else None
        out.append(
            {
                "device": device,
                "bytes": r["total"],
                "budget": budget,
                "over": bool(budget and r["total"] > budget),
            }
        )
    return out


def over_budget(*, limit: int = 10) -> list[Problem]:
    return [
        Problem(u["device"], "over_budget", f"{u['bytes'] // MIB} of {u['budget'] // MIB} MiB today")
        for u in usage_today(limit=max(limit, 50))
        if u["over"]
    ][:limit]


def fleet_problems(*, limit: int = 10) -> dict[str, list[Problem]]:
    return {
        "offline": offline_long(limit=limit),
        "hot": hot(limit=limit),
        "backlog": backlog(limit=limit),
        "update_failed": update_failed(limit=limit),
        "over_budget": over_budget(limit=limit),
    }


def uplink_today() -> dict:
    """Verified upload bytes of the whole fleet today, and the fleet default policy's daily budget."""
    from telemetry.models.policies import BandwidthPolicy

    total = DataUsage.objects.filter(today_q()).aggregate(n=Sum("bytes"))["n"] or 0
    default = BandwidthPolicy.objects.filter(Q(device__isnull=True) & Q(group__isnull=True)).first()
    per_camera = default.daily_budget_mb * MIB if default and default.daily_budget_mb else None
    return {"bytes": total, "per_camera_budget": per_camera, "policy": default}
