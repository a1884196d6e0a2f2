"""Reads of device availability: one device's status, and the fleet summary for a dashboard."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Case, CharField, Count, Q, QuerySet, Value, When

from devices.filters import CONNECTIVITY_CHOICES
from devices.models import Device, DeviceState, Site

CONNECTIVITY = tuple(value for value, _ in CONNECTIVITY_CHOICES)  # one list, shared with the filter

# online: a birth (or traffic) on record and no will / silence since; never_seen: no message ever.
connectivity = Case(
    When(last_seen_at__isnull=True, then=Value("never_seen")),
    When(status__online=True, then=Value("online")),
    default=Value("offline"),
    output_field=CharField(),
)


def _counts() -> dict[str, int]:
    return dict.fromkeys((*CONNECTIVITY, "total"), 0)


def fleet_devices() -> QuerySet[Device]:
    """The devices a fleet summary counts: every device that is not decommissioned."""
    return Device.objects.filter(~Q(state=DeviceState.DECOMMISSIONED))


def fleet_status_summary() -> dict[str, Any]:
    """Counts online / offline / never seen, overall and by agent version, model version and site.

    One GROUP BY query whatever the fleet size: its rows are bounded by the distinct (version pair,
    site, connectivity) combinations, not devices; the breakdowns are summed from them here.
    """
    totals = _counts()
    by_agent: dict[str, dict[str, int]] = defaultdict(_counts)
    by_model: dict[str, dict[str, int]] = defaultdict(_counts)
    by_site: dict[int | None, dict[str, Any]] = {}
    rows = (
        fleet_devices()
        .annotate(connectivity=connectivity)
        .values("connectivity", "agent_version", "model_version", "site_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    names = dict(Site.objects.values_list("pk", "name"))
    for row in rows:
        state, n = row["connectivity"], row["n"]
        site = by_site.setdefault(
            row["site_id"], {"site": row["site_id"], "site_name": names.get(row["site_id"], ""), **_counts()}
        )
        for bucket in (totals, by_agent[row["agent_version"]], by_model[row["model_version"]], site):
            bucket[state] += n
            bucket["total"] += n

    def listing(groups: dict[str, dict[str, int]], key: str) -> list[dict[str, Any]]:
        return [
            {key: name, **counts} for name, counts in sorted(groups.items(), key=lambda kv: -kv[1]["total"])
        ]

    return {
        **totals,
        "by_agent_version": listing(by_agent, "agent_version"),
        "by_model_version": listing(by_model, "model_version"),
        "by_site": sorted(by_site.values(), key=lambda s: (s["site_name"], s["site"] or 0)),
    }


def device_status(*, device: Device) -> dict[str, Any]:
    """One device's availability as the API shows it."""
    status = getattr(device, "status", None)  # RelatedObjectDoesNotExist is an AttributeError
    if device.last_seen_at is None:
        state = "never_seen"
    else:
        state = "online" if status is not None and status.online else "offline"
    return {
        "device_id": device.device_id,
        "connectivity": state,
        "online": state == "online",
        "since": status.since if status else None,
        "reason": status.reason if status else "",
        "last_status_at": status.status_at if status else None,
        "last_seen_at": device.last_seen_at,
        "agent_version": device.agent_version,
        "model_version": device.model_version,
        "hardware_model": status.hardware_model if status else "",
        "uptime_s": status.uptime_s if status else None,
        "config_revision": status.config_revision if status else None,
        "faults": status.faults if status else [],
    }
