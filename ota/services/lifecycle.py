"""A deployment's lifecycle: the one table of allowed state moves, and each move with its side effects.

Operator actions (ota.services.deployments) and the rollout engine (ota.services.rollout, its
failure thresholds and quality gates) both move a deployment through here, on a row they hold
locked; nothing else writes `Deployment.state`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

from fleet.audit import Actor, audit_record
from ota.errors import OtaError
from ota.models import TERMINAL, Deployment, DeploymentState, DeviceUpdate
from ota.services.offers import offers_clear

S = DeploymentState
IN_FLIGHT = ("notified", "downloading", "verifying", "shadow", "installing", "health_check")
# In shadow a device waits for the server (the gate), not the other way round: no timeout, no slot
# of max_concurrent.
DEVICE_BUSY = tuple(s for s in IN_FLIGHT if s != "shadow")
# Devices in these states at abort time may run the new model: a rollback re-targets them.
TOOK_NEW_MODEL = ("installing", "health_check", "succeeded")
ENGINE = Actor.system("ota-engine")

TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.DRAFT: (S.SCHEDULED, S.RUNNING),
    S.SCHEDULED: (S.RUNNING, S.PAUSED, S.ABORTED, S.ROLLED_BACK),
    S.RUNNING: (S.PAUSED, S.COMPLETED, S.ABORTED, S.ROLLED_BACK),
    S.PAUSED: (S.RUNNING, S.SCHEDULED, S.ABORTED, S.ROLLED_BACK),
    S.COMPLETED: (S.ROLLED_BACK,),
    S.ABORTED: (S.ROLLED_BACK,),
    S.ROLLED_BACK: (),
}
FINAL = (S.COMPLETED, S.ABORTED, S.ROLLED_BACK)


def transition(deployment: Deployment, state: str, *, reason: str, now: dt.datetime, actor: Actor) -> None:
    """Move a locked deployment to `state` (refused unless TRANSITIONS allows it); audited."""
    if state not in TRANSITIONS[deployment.state] and state != deployment.state:
        raise OtaError(
            "invalid_state",
            f"A deployment that is {deployment.state} cannot become {state}.",
            status=409,
        )
    before = {"state": deployment.state}
    deployment.state = state
    deployment.state_reason = reason[:500]
    fields = ["state", "state_reason", "updated_at"]
    if state in FINAL:
        deployment.finished_at = now
        fields.append("finished_at")
        DeviceUpdate.objects.filter(deployment=deployment, active=True).update(active=False)
    deployment.save(update_fields=fields)
    audit_record(
        actor=actor,
        action=f"deployment.{state}",
        instance=deployment,
        before=before,
        after={"state": state, "reason": reason},
    )


def plan_waves(deployment: Deployment) -> list[dict[str, Any]]:
    """Assign each DeviceUpdate its wave (0: canaries, then the cumulative percentages); the plan."""
    rows = DeviceUpdate.objects.filter(deployment=deployment)
    canary_ids = set(deployment.canary_devices or [])
    ordered = list(rows.order_by("id").values_list("pk", "device__device_id"))
    canary = [pk for pk, device_id in ordered if device_id in canary_ids]
    rest = [pk for pk, device_id in ordered if device_id not in canary_ids]
    extra = min(deployment.canary_count, max(0, len(rest) - 1)) if deployment.canary_count else 0
    canary, rest = canary + rest[:extra], rest[extra:]
    groups: list[tuple[str, list[int]]] = []
    if canary:
        groups.append(("canary", canary))
    start = 0
    for percent in deployment.waves or [100]:
        end = math.ceil(len(rest) * percent / 100)
        if end > start:
            groups.append((f"{percent}%", rest[start:end]))
        start = max(start, end)
    plan = []
    for wave, (label, pks) in enumerate(groups):
        if label == "canary":
            for i in range(0, len(pks), 900):
                rows.filter(pk__in=pks[i : i + 900]).update(wave=wave)
        else:  # the rest are contiguous in id order: one range update per wave
            rows.filter(pk__gte=pks[0], pk__lte=pks[-1]).exclude(pk__in=canary[:900]).update(wave=wave)
        plan.append({"wave": wave, "label": label, "size": len(pks)})
    return plan


def begin(*, deployment: Deployment, now: dt.datetime, actor: Actor = ENGINE) -> None:
    """scheduled/draft -> running: plan the waves and open wave 0 (the engine notifies it)."""
    plan = plan_waves(deployment)
    deployment.plan = plan
    deployment.wave_count = len(plan)
    deployment.current_wave, deployment.wave_started_at, deployment.wave_done_at = 0, now, None
    deployment.started_at = now
    deployment.save(
        update_fields=["plan", "wave_count", "current_wave", "wave_started_at", "wave_done_at", "started_at"]
    )
    transition(deployment, S.RUNNING, reason="", now=now, actor=actor)


def pause(*, deployment: Deployment, reason: str, now: dt.datetime, actor: Actor) -> None:
    """No new device is notified; devices already updating finish and still report."""
    transition(deployment, S.PAUSED, reason=reason, now=now, actor=actor)


def abort(
    *, deployment: Deployment, rollback: bool, reason: str, now: dt.datetime, actor: Actor
) -> Deployment:
    """Stop: unfinished devices are cancelled (their retained offer cleared); with rollback, devices
    that took the new model get their previous release again under a new, higher serial."""
    took_new = list(
        DeviceUpdate.objects.filter(deployment=deployment, state__in=TOOK_NEW_MODEL).values_list(
            "pk", flat=True
        )
    )
    unfinished = DeviceUpdate.objects.filter(deployment=deployment).exclude(state__in=TERMINAL)
    notified = list(unfinished.exclude(state="pending").values_list("device__device_id", flat=True))
    for state in ("pending", *IN_FLIGHT):
        unfinished.filter(state=state).update(
            state="cancelled", reason=f"deployment aborted while {state}", finished_at=now, updated_at=now
        )
    offers_clear(device_ids=notified)
    if not rollback:
        transition(deployment, S.ABORTED, reason=reason, now=now, actor=actor)
        return deployment
    return rollback_devices(actor=actor, deployment=deployment, update_pks=took_new, reason=reason, now=now)


def rollback_devices(
    *, actor: Actor, deployment: Deployment, update_pks: list[int], reason: str, now: dt.datetime
) -> Deployment:
    """-> rolled_back; each device of `update_pks` is shipped the release it ran before, re-signed."""
    # A rollback *creates* deployments: the create and start services, imported here because they
    # use this module for their own moves.
    from ota.models import Release
    from ota.services.deployments import deployment_create, deployment_start
    from ota.services.releases import release_resign

    by_release: dict[int | None, list[str]] = defaultdict(list)
    for device_id, release_pk in DeviceUpdate.objects.filter(pk__in=update_pks).values_list(
        "device__device_id", "from_release_id"
    ):
        by_release[release_pk].append(device_id)
    stranded = by_release.pop(None, [])
    note = f"; {len(stranded)} device(s) had no earlier release to return to" if stranded else ""
    transition(deployment, S.ROLLED_BACK, reason=reason + note, now=now, actor=actor)
    for release_pk, device_ids in by_release.items():
        previous = Release.objects.get(pk=release_pk)
        again = release_resign(actor=actor, release=previous, rollback_of=deployment, now=now)
        child = deployment_create(
            actor=actor,
            data={
                "name": f"rollback of {deployment.name}"[:100],
                "release": again,
                "targets": {"devices": device_ids},
                "waves": [100],
                "device_timeout_s": deployment.device_timeout_s,
                "rollback_of": deployment,
            },
        )
        deployment_start(actor=actor, deployment=child, now=now)
    return deployment
