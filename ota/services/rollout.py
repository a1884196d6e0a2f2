"""The rollout engine: one idempotent step per deployment, run by the beat tick and after device reports.

A step holds the deployment row lock (select_for_update, skip_locked in the tick), so two
workers never step the same deployment at once and a step can be repeated at any time.

Waves: wave 0 holds the canaries (when any), waves 1..n the rest by cumulative percentage.
A wave is *done* when none of its devices is pending and every device that got the offer
(delivered) is terminal; devices that were offline stay notified and get the retained
offer when they return, without holding the rollout up. The soak time runs from "done".
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from fleet.audit import audit_record
from ota.models import (
    FAILED_STATES,
    TERMINAL,
    Deployment,
    DeploymentState,
    DeviceUpdate,
)
from ota.services import lifecycle
from ota.services.gates import gate_check
from ota.services.lifecycle import DEVICE_BUSY, ENGINE, IN_FLIGHT
from ota.services.offers import offers_send, shadow_request

log = logging.getLogger(__name__)


def in_window(start: str, end: str, local: dt.time) -> bool:
    """Is local time inside [start, end)? A window may wrap midnight (22:00-04:00)."""
    if not start or not end:
        return True
    s, e = dt.time.fromisoformat(start), dt.time.fromisoformat(end)
    if s <= e:
        return s <= local < e
    return local >= s or local < e


def online_since(now: dt.datetime) -> dt.datetime:
    from django.conf import settings

    return now - dt.timedelta(seconds=settings.OTA_ONLINE_WINDOW_S)


def _timeouts(deployment: Deployment, now: dt.datetime) -> int:
    cutoff = now - dt.timedelta(seconds=deployment.device_timeout_s)
    return DeviceUpdate.objects.filter(
        deployment=deployment, state__in=DEVICE_BUSY, delivered_at__lt=cutoff
    ).update(
        state="timed_out",
        reason=f"no final report within {deployment.device_timeout_s}s of delivery",
        finished_at=now,
        updated_at=now,
    )


def failure_counts(deployment: Deployment) -> tuple[int, int]:
    """(finished, failed) over the whole deployment; cancelled devices count as neither."""
    agg = DeviceUpdate.objects.filter(deployment=deployment).aggregate(
        finished=Count("id", filter=Q(state__in=[s for s in TERMINAL if s != "cancelled"])),
        failed=Count("id", filter=Q(state__in=FAILED_STATES)),
    )
    return agg["finished"], agg["failed"]


def check_thresholds(deployment: Deployment, now: dt.datetime) -> bool:
    """Pause or abort on the failure rate (AWS IoT Jobs abortConfig style). True if it stopped the rollout."""
    if deployment.pause_failure_rate is None and deployment.abort_failure_rate is None:
        return False
    finished, failed = failure_counts(deployment)
    if finished < max(1, deployment.min_finished):
        return False
    rate = failed / finished
    detail = f"failure rate {rate:.0%} ({failed} of {finished} finished)"
    if deployment.abort_failure_rate is not None and rate >= deployment.abort_failure_rate:
        lifecycle.abort(
            actor=ENGINE,
            deployment=deployment,
            rollback=deployment.auto_rollback,
            reason=f"{detail} >= abort threshold {deployment.abort_failure_rate:.0%}",
            now=now,
        )
        return True
    # After a resume, only failures beyond the ones the operator accepted pause again.
    if (
        deployment.pause_failure_rate is not None
        and rate >= deployment.pause_failure_rate
        and failed > deployment.failures_acknowledged
    ):
        lifecycle.pause(
            deployment=deployment,
            reason=f"{detail} >= pause threshold {deployment.pause_failure_rate:.0%}",
            now=now,
            actor=ENGINE,
        )
        return True
    return False


def _release_budget(deployment: Deployment, now: dt.datetime) -> int | None:
    budget: int | None = None
    if deployment.max_concurrent:
        busy = DeviceUpdate.objects.filter(
            deployment=deployment, state__in=DEVICE_BUSY, delivered_at__isnull=False
        ).count()
        budget = max(0, deployment.max_concurrent - busy)
    if deployment.max_per_minute:
        recent = DeviceUpdate.objects.filter(
            deployment=deployment, notified_at__gt=now - dt.timedelta(seconds=60)
        ).count()
        left = max(0, deployment.max_per_minute - recent)
        budget = left if budget is None else min(budget, left)
    return budget


def _notify_wave(deployment: Deployment, wave: int, now: dt.datetime) -> int:
    """pending -> notified for as many devices of `wave` as limits and maintenance windows allow."""
    budget = _release_budget(deployment, now)
    if budget == 0:
        return 0
    rows = DeviceUpdate.objects.filter(deployment=deployment, wave=wave, state="pending").order_by("id")
    picked: list[tuple[int, str, bool]] = []
    since = online_since(now)
    for pk, device_id, tz, seen in rows.values_list(
        "pk", "device__device_id", "device__site__timezone", "device__last_seen_at"
    ).iterator(chunk_size=2000):
        if deployment.window_start:
            local = now.astimezone(zoneinfo.ZoneInfo(tz or "UTC")).time()
            if not in_window(deployment.window_start, deployment.window_end, local):
                continue
        picked.append((pk, device_id, seen is not None and seen >= since))
        if budget is not None and len(picked) >= budget:
            break
    if not picked:
        return 0
    online = [pk for pk, _, up in picked if up]
    offline = [pk for pk, _, up in picked if not up]
    # Timeout counts from delivery: now for devices online, on reconnect for the others.
    for chunk in _chunks(online):
        DeviceUpdate.objects.filter(pk__in=chunk, state="pending").update(
            state="notified", notified_at=now, delivered_at=now, updated_at=now
        )
    for chunk in _chunks(offline):
        DeviceUpdate.objects.filter(pk__in=chunk, state="pending").update(
            state="notified", notified_at=now, updated_at=now
        )
    return offers_send(
        deployment=deployment, device_ids=[d for _, d, _ in picked], shadow=shadow_request(deployment, wave)
    )


def _chunks(items: list, size: int = 900) -> list[list]:
    # SQLite allows 999 parameters per statement.
    return [items[i : i + size] for i in range(0, len(items), size)]


def wave_busy(deployment_pk: int, wave: int) -> bool:
    """Some device of the wave is pending, or got the offer and has not finished."""
    return DeviceUpdate.objects.filter(
        Q(state="pending") | Q(state__in=IN_FLIGHT, delivered_at__isnull=False),
        deployment_id=deployment_pk,
        wave=wave,
    ).exists()


def _wave_done(deployment: Deployment, wave: int) -> bool:
    return not wave_busy(deployment.pk, wave)


def _shadow_ready(deployment: Deployment, wave: int) -> bool:
    """Every device of the wave that got the offer is running it in shadow (or finished)."""
    return not DeviceUpdate.objects.filter(
        Q(state="pending") | Q(state__in=DEVICE_BUSY, delivered_at__isnull=False),
        deployment=deployment,
        wave=wave,
    ).exists()


def _shadow_phase(deployment: Deployment, wave: int, now: dt.datetime) -> bool:
    """A shadow deployment's wave before it switches: all in shadow, soak, gate, then activate.

    True while the wave is still in its shadow phase (the engine waits); False once it is activated.
    """
    if not deployment.shadow or wave <= deployment.shadow_activated_wave:
        return False
    if not _shadow_ready(deployment, wave):
        return True
    if deployment.wave_done_at is None:  # the shadow soak runs from here
        deployment.wave_done_at = now
        deployment.save(update_fields=["wave_done_at", "updated_at"])
    soak_end = deployment.wave_done_at + dt.timedelta(seconds=deployment.shadow.get("soak_s", 0))
    if now < soak_end or not gate_check(
        deployment=deployment, wave=wave, now=now, soak_end=soak_end, shadow=True
    ):
        return True
    # Passed: the same release again without `shadow` tells the wave's cameras to switch to it. The
    # ones still unfinished but not in shadow were told while offline and never got it: the switch
    # replaces the shadow offer the broker keeps for them (run first, it still ends in the switch).
    # Nothing else would tell them later, and a camera in shadow never times out.
    deployment.shadow_activated_wave, deployment.wave_done_at = wave, None
    deployment.save(update_fields=["shadow_activated_wave", "wave_done_at", "updated_at"])
    told = list(
        DeviceUpdate.objects.filter(deployment=deployment, wave=wave, state__in=IN_FLIGHT).values_list(
            "device__device_id", flat=True
        )
    )
    offers_send(deployment=deployment, device_ids=told)
    audit_record(
        actor=ENGINE,
        action="deployment.activate",
        instance=deployment,
        after={"wave": wave, "devices": len(told)},
    )
    return False


def _advance(deployment: Deployment, now: dt.datetime) -> None:
    last = deployment.wave_count - 1
    for _ in range(deployment.wave_count + 1):  # at most one pass per wave
        wave = deployment.current_wave
        _notify_wave(deployment, wave, now)
        if _shadow_phase(deployment, wave, now) or not _wave_done(deployment, wave):
            return
        if deployment.wave_done_at is None:
            deployment.wave_done_at = now
            deployment.save(update_fields=["wave_done_at", "updated_at"])
        if wave >= last:
            if not DeviceUpdate.objects.filter(deployment=deployment).exclude(state__in=TERMINAL).exists():
                lifecycle.transition(
                    deployment,
                    DeploymentState.COMPLETED,
                    reason="every device finished",
                    now=now,
                    actor=ENGINE,
                )
            return
        soak_end = deployment.wave_done_at + dt.timedelta(seconds=deployment.soak_s)
        if now < soak_end:
            return
        # Quality: the wave's cameras against a control cohort, before anyone else gets the model.
        if not gate_check(deployment=deployment, wave=wave, now=now, soak_end=soak_end):
            return
        deployment.current_wave = wave + 1
        deployment.wave_started_at, deployment.wave_done_at = now, None
        deployment.save(update_fields=["current_wave", "wave_started_at", "wave_done_at", "updated_at"])
        audit_record(actor=ENGINE, action="deployment.wave", instance=deployment, after={"wave": wave + 1})


def deployment_step(*, deployment: Deployment, now: dt.datetime | None = None) -> Deployment:
    """Move one locked deployment forward: start if due, time out, thresholds, notify, advance waves."""
    now = now or timezone.now()
    if (
        deployment.state == DeploymentState.SCHEDULED
        and deployment.scheduled_at
        and deployment.scheduled_at <= now
    ):
        lifecycle.begin(deployment=deployment, now=now)
    if deployment.state != DeploymentState.RUNNING:
        return deployment
    timed_out = _timeouts(deployment, now)
    if timed_out:
        log.info("ota.timed_out", extra={"deployment": deployment.pk, "count": timed_out})
    if check_thresholds(deployment, now):
        return deployment
    _advance(deployment, now)
    return deployment


def step_by_id(*, pk: int, now: dt.datetime | None = None, wait: bool = False) -> bool:
    """Lock and step one deployment. With wait=False a deployment someone else is stepping is skipped."""
    with transaction.atomic():
        deployment = (
            Deployment.objects.select_for_update(skip_locked=not wait)
            .select_related("release__artifact")
            .filter(pk=pk)
            .first()
        )
        if deployment is None:
            return False
        deployment_step(deployment=deployment, now=now)
        return True


def tick(*, now: dt.datetime | None = None) -> int:
    """Step every running or due deployment; safe to run concurrently (skip_locked). Returns how many stepped."""
    now = now or timezone.now()
    due = Deployment.objects.filter(
        Q(state=DeploymentState.RUNNING) | Q(state=DeploymentState.SCHEDULED, scheduled_at__lte=now)
    ).values_list("pk", flat=True)
    return sum(step_by_id(pk=pk, now=now) for pk in list(due))
