"""OTA reads: progress per deployment and per wave in one GROUP BY, cheap enough to poll."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, QuerySet
from django.utils import timezone

from ota.models import FAILED_STATES, TERMINAL, Deployment, DeviceUpdate
from protocol.vocab import OTA_STATES


def deployment_queryset() -> QuerySet[Deployment]:
    return Deployment.objects.select_related("release__track", "release__artifact")


def _summary(counts: dict[str, int]) -> dict[str, Any]:
    total = sum(counts.values())
    finished = sum(n for s, n in counts.items() if s in TERMINAL and s != "cancelled")
    failed = sum(n for s, n in counts.items() if s in FAILED_STATES)
    return {
        "total": total,
        "counts": {s: counts.get(s, 0) for s in OTA_STATES},
        "finished": finished,
        "failed": failed,
        "failure_rate": round(failed / finished, 4) if finished else 0.0,
    }


def deployment_progress(*, deployment: Deployment, now: dt.datetime | None = None) -> dict[str, Any]:
    """Counts by state for the deployment and each wave, failure rate and ETA: one query."""
    now = now or timezone.now()
    per_wave: dict[int, dict[str, int]] = {}
    rows = (
        DeviceUpdate.objects.filter(deployment=deployment)
        .values_list("wave", "state")
        .annotate(n=Count("id"))
    )
    for wave, state, n in rows.order_by():
        per_wave.setdefault(wave, {})[state] = n
    overall: dict[str, int] = {}
    for counts in per_wave.values():
        for state, n in counts.items():
            overall[state] = overall.get(state, 0) + n
    result = _summary(overall)
    labels = {p["wave"]: p["label"] for p in deployment.plan or []}
    result["waves"] = [
        {"wave": wave, "label": labels.get(wave, ""), **_summary(per_wave[wave])} for wave in sorted(per_wave)
    ]
    done = sum(n for s, n in overall.items() if s in TERMINAL)
    remaining = result["total"] - done
    eta = None
    if deployment.started_at and done and remaining and deployment.state == "running":
        elapsed = (now - deployment.started_at).total_seconds()
        eta = round(remaining * elapsed / done, 1)  # at the mean rate so far; soak time not included
    result.update(
        state=deployment.state,
        current_wave=deployment.current_wave,
        wave_count=deployment.wave_count,
        eta_s=eta if remaining else 0.0,
    )
    return result
