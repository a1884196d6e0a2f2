"""Deployments: resolve targets, refuse conflicts, and the operator actions on a rollout (their moves: lifecycle)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from devices.models import Device, DeviceGroup, DeviceState, HardwareModel, SavedFilter, Site
from devices.selectors import saved_filter_devices
from fleet.audit import Actor, audit_record, snapshot
from fleet.services import model_delete, validation_error
from ota import gates
from ota.errors import OtaError
from ota.models import (
    ACTIVE_DEPLOYMENT_STATES,
    FINAL_DEPLOYMENT_STATES,
    TERMINAL,
    Deployment,
    DeploymentState,
    DeviceUpdate,
    Release,
)
from ota.services import lifecycle, rollout
from ota.services.gates import gate_override
from ota.services.lifecycle import TOOK_NEW_MODEL

TARGET_KINDS = ("devices", "groups", "tags", "sites", "hardware_models", "saved_filters")
_ID_TARGETS = {
    "groups": DeviceGroup,
    "sites": Site,
    "hardware_models": HardwareModel,
    "saved_filters": SavedFilter,
}
STRATEGY_FIELDS = (
    "canary_devices",
    "canary_count",
    "waves",
    "soak_s",
    "max_concurrent",
    "max_per_minute",
    "pause_failure_rate",
    "abort_failure_rate",
    "min_finished",
    "device_timeout_s",
    "window_start",
    "window_end",
    "auto_rollback",
    "gates",
    "shadow",
    "scheduled_at",
)


def _bad(field: str, message: str, code: str = "validation_error") -> OtaError:
    return OtaError(code, message, fields={field: [message]})


def targets_queryset(targets: Any) -> QuerySet[Device]:
    """Devices matching ANY of the selectors; refuses unknown selector kinds and ids."""
    if not isinstance(targets, dict) or not targets:
        raise _bad("targets", "Name at least one target: " + ", ".join(TARGET_KINDS) + ".")
    unknown = sorted(set(targets) - set(TARGET_KINDS))
    if unknown:
        raise _bad("targets", f"Unknown target kind(s): {', '.join(unknown)}.")
    q = Q()
    for kind, values in targets.items():
        if not isinstance(values, list) or not values or len(values) > 10_000:
            raise _bad("targets", f"targets.{kind} must be a list of 1..10000 values.")
        if kind in ("devices", "tags"):
            if not all(isinstance(v, str) for v in values):
                raise _bad("targets", f"targets.{kind} are names (strings).")
            field = "device_id" if kind == "devices" else "tags__name"
            known = set(
                Device.objects.filter(device_id__in=values).values_list("device_id", flat=True)
                if kind == "devices"
                else Device.tags.field.related_model.objects.filter(name__in=values).values_list(
                    "name", flat=True
                )
            )
            q |= Q(**{f"{field}__in": values})
        else:
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise _bad("targets", f"targets.{kind} are ids (integers).")
            known = set(_ID_TARGETS[kind].objects.filter(pk__in=values).values_list("pk", flat=True))
            if kind == "saved_filters":
                for saved in SavedFilter.objects.filter(pk__in=values):
                    q |= Q(pk__in=saved_filter_devices(saved_filter=saved).values("pk"))
            else:
                field = {"groups": "groups", "sites": "site", "hardware_models": "hardware_model"}[kind]
                q |= Q(**{f"{field}__in": values})
        missing = [v for v in values if v not in known]
        if missing:
            raise _bad(
                "targets", f"Unknown {kind}: {', '.join(map(str, missing[:20]))}.", code="unknown_target"
            )
    return Device.objects.filter(pk__in=Device.objects.filter(q).values("pk"))


def conflicts(devices: QuerySet[Device], *, exclude: Deployment | None = None) -> dict[str, list]:
    """Devices of `devices` held by another active deployment: {"devices": [...], "deployments": [...]}."""
    held = DeviceUpdate.objects.filter(active=True, device__in=devices.values("pk"))
    if exclude is not None:
        held = held.exclude(deployment=exclude)
    pairs = list(
        held.values_list("device__device_id", "deployment_id").order_by("deployment_id", "device_id")[:1000]
    )
    return {"devices": [d for d, _ in pairs], "deployments": sorted({p for _, p in pairs})}


def _conflict_error(found: dict[str, list]) -> OtaError:
    shown = ", ".join(found["devices"][:10]) + (" …" if len(found["devices"]) > 10 else "")
    deps = ", ".join(f"#{p}" for p in found["deployments"])
    return OtaError(
        "conflict",
        f"{len(found['devices'])} device(s) are already in active deployment {deps}: {shown}.",
        fields={"devices": found["devices"], "deployments": found["deployments"]},
        status=409,
    )


def _check_strategy(data: dict[str, Any]) -> None:
    waves = data.get("waves") or [100]
    if (
        not isinstance(waves, list)
        or not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 100 for w in waves)
        or waves != sorted(set(waves))
        or waves[-1] != 100
    ):
        raise _bad("waves", "Waves are increasing cumulative percentages ending at 100, e.g. [10, 50, 100].")
    data["waves"] = waves
    if bool(data.get("window_start")) != bool(data.get("window_end")):
        raise _bad("window_start", "A maintenance window needs both a start and an end (HH:MM).")
    try:
        data["shadow"] = gates.check_shadow(data.get("shadow"))
    except ValueError as exc:
        raise _bad("shadow", str(exc)) from None
    try:
        data["gates"] = gates.check_settings(data.get("gates"), shadow=bool(data["shadow"]))
    except ValueError as exc:
        raise _bad("gates", str(exc)) from None
    pause, abort = data.get("pause_failure_rate"), data.get("abort_failure_rate")
    if pause is not None and abort is not None and pause > abort:
        raise _bad("pause_failure_rate", "The pause threshold must not be above the abort threshold.")


def _previous_releases(devices: QuerySet[Device], release: Release) -> dict[int, int]:
    """device pk -> the release its last successful update installed (what a rollback returns to)."""
    rows = (
        DeviceUpdate.objects.filter(device__in=devices.values("pk"), state="succeeded")
        .exclude(deployment__release=release)
        .order_by("device_id", "-finished_at", "-id")
        .values_list("device_id", "deployment__release_id")
    )
    found: dict[int, int] = {}
    for device_pk, release_pk in rows.iterator(chunk_size=5000):
        found.setdefault(device_pk, release_pk)
    return found


@transaction.atomic
def deployment_create(*, actor: Actor, data: dict[str, Any]) -> Deployment:
    """A draft deployment with one pending DeviceUpdate per compatible target device.

    Devices that are not active or whose hardware the release does not list are excluded with a
    reason; devices held by another active deployment refuse the whole request (409, naming them).
    """
    data = dict(data)
    release: Release = data["release"]
    _check_strategy(data)
    devices = targets_queryset(data.get("targets"))
    found = conflicts(devices)
    if found["devices"]:
        raise _conflict_error(found)
    hardware = set(release.hardware_models.values_list("pk", flat=True))
    included: list[tuple[int, str]] = []
    excluded: list[dict[str, str]] = []
    for pk, device_id, state, hw_pk, hw_name in devices.order_by("pk").values_list(
        "pk", "device_id", "state", "hardware_model_id", "hardware_model__name"
    ):
        if state != DeviceState.ACTIVE:
            excluded.append({"device": device_id, "reason": f"device_{state}"})
        elif hw_pk is None:
            excluded.append({"device": device_id, "reason": "unknown_hardware"})
        elif hw_pk not in hardware:
            excluded.append({"device": device_id, "reason": f"incompatible_hardware: {hw_name}"})
        else:
            included.append((pk, device_id))
    if not included:
        raise OtaError(
            "no_devices",
            f"No target device can take this release ({len(excluded)} excluded).",
            fields={"targets": ["No compatible active device."], "excluded": excluded[:100]},
        )
    canaries = data.get("canary_devices") or []
    if len(canaries) > 500:
        raise _bad("canary_devices", "At most 500 canary devices.")
    stray = sorted(set(canaries) - {d for _, d in included})
    if stray:
        raise _bad("canary_devices", f"Canary devices must be included targets: {', '.join(stray[:20])}.")
    deployment = Deployment(
        **{
            k: v
            for k, v in data.items()
            if k in (*STRATEGY_FIELDS, "name", "release", "targets", "rollback_of")
        },
        excluded=excluded,
    )
    try:
        deployment.full_clean()
    except ValidationError as exc:
        raise validation_error(exc) from exc
    deployment.save()
    previous = _previous_releases(devices, release)
    DeviceUpdate.objects.bulk_create(
        (
            DeviceUpdate(deployment=deployment, device_id=pk, from_release_id=previous.get(pk))
            for pk, _ in included
        ),
        batch_size=1000,
    )
    after = snapshot(deployment)
    after.update(devices=len(included), excluded=len(excluded))
    audit_record(actor=actor, action="deployment.create", instance=deployment, after=after)
    return deployment


def _activate(deployment: Deployment) -> None:
    """Claim the devices (partial unique index): concurrent starts cannot both hold a device."""
    rows = DeviceUpdate.objects.filter(deployment=deployment)
    found = conflicts(Device.objects.filter(pk__in=rows.values("device_id")), exclude=deployment)
    if found["devices"]:
        raise _conflict_error(found)
    try:
        with transaction.atomic():
            rows.exclude(state__in=TERMINAL).update(active=True)
    except IntegrityError:
        raise _conflict_error(
            conflicts(Device.objects.filter(pk__in=rows.values("device_id")), exclude=deployment)
        ) from None


def _locked(deployment: Deployment) -> Deployment:
    return Deployment.objects.select_for_update().select_related("release__artifact").get(pk=deployment.pk)


def _require(deployment: Deployment, states: tuple[str, ...], action: str) -> None:
    if deployment.state not in states:
        raise OtaError(
            "invalid_state",
            f"Cannot {action} a deployment that is {deployment.state} (allowed from: {', '.join(states)}).",
            status=409,
        )


@transaction.atomic
def deployment_start(*, actor: Actor, deployment: Deployment, now: dt.datetime | None = None) -> Deployment:
    """draft -> running now, or scheduled when scheduled_at is in the future. Claims the devices."""
    now = now or timezone.now()
    deployment = _locked(deployment)
    _require(deployment, (DeploymentState.DRAFT,), "start")
    if deployment.release.expires_at <= now:
        raise OtaError(
            "release_expired", f"Release {deployment.release} has expired; sign a new one.", status=409
        )
    _activate(deployment)
    audit_record(
        actor=actor, action="deployment.start", instance=deployment, after={"state": deployment.state}
    )
    if deployment.scheduled_at and deployment.scheduled_at > now:
        lifecycle.transition(deployment, DeploymentState.SCHEDULED, reason="", now=now, actor=actor)
        return deployment
    lifecycle.begin(deployment=deployment, now=now)
    return rollout.deployment_step(deployment=deployment, now=now)


@transaction.atomic
def deployment_pause(
    *, actor: Actor, deployment: Deployment, reason: str = "", now: dt.datetime | None = None
) -> Deployment:
    """No new devices are notified; devices already updating finish and still report."""
    now = now or timezone.now()
    deployment = _locked(deployment)
    _require(deployment, (DeploymentState.RUNNING, DeploymentState.SCHEDULED), "pause")
    lifecycle.pause(deployment=deployment, reason=reason or "paused by operator", now=now, actor=actor)
    return deployment


@transaction.atomic
def deployment_resume(*, actor: Actor, deployment: Deployment, now: dt.datetime | None = None) -> Deployment:
    """Carry on; the failures so far are accepted, so only new ones can trip the pause threshold again."""
    now = now or timezone.now()
    deployment = _locked(deployment)
    _require(deployment, (DeploymentState.PAUSED,), "resume")
    deployment.failures_acknowledged = rollout.failure_counts(deployment)[1]
    deployment.save(update_fields=["failures_acknowledged"])
    gate_override(deployment=deployment, actor=actor, now=now)
    if deployment.started_at is None:
        lifecycle.transition(deployment, DeploymentState.SCHEDULED, reason="resumed", now=now, actor=actor)
        return deployment
    lifecycle.transition(deployment, DeploymentState.RUNNING, reason="resumed", now=now, actor=actor)
    return rollout.deployment_step(deployment=deployment, now=now)


@transaction.atomic
def deployment_abort(
    *,
    actor: Actor,
    deployment: Deployment,
    rollback: bool = False,
    reason: str = "",
    now: dt.datetime | None = None,
) -> Deployment:
    """Stop: unfinished devices are cancelled (their retained offer cleared); with rollback, devices
    that took the new model get their previous release again under a new, higher serial."""
    now = now or timezone.now()
    deployment = _locked(deployment)
    _require(deployment, ACTIVE_DEPLOYMENT_STATES, "abort")
    return lifecycle.abort(
        deployment=deployment, rollback=rollback, reason=reason or "aborted by operator", now=now, actor=actor
    )


@transaction.atomic
def deployment_rollback(
    *, actor: Actor, deployment: Deployment, now: dt.datetime | None = None
) -> Deployment:
    """Undo a deployment: abort it if still active, then ship each device its previous release."""
    now = now or timezone.now()
    deployment = _locked(deployment)
    if deployment.state in ACTIVE_DEPLOYMENT_STATES:
        return deployment_abort(
            actor=actor, deployment=deployment, rollback=True, reason="rolled back by operator", now=now
        )
    _require(deployment, (DeploymentState.COMPLETED, DeploymentState.ABORTED), "roll back")
    took_new = DeviceUpdate.objects.filter(deployment=deployment).filter(
        Q(state="succeeded")
        | Q(state="cancelled", reason__in=[f"deployment aborted while {s}" for s in TOOK_NEW_MODEL])
    )
    return lifecycle.rollback_devices(
        actor=actor,
        deployment=deployment,
        update_pks=list(took_new.values_list("pk", flat=True)),
        reason="rolled back by operator",
        now=now,
    )


def deployment_delete(*, actor: Actor, instance: Deployment) -> None:
    """Only drafts and finished deployments may go; a live rollout is aborted instead."""
    if instance.state not in (DeploymentState.DRAFT, *FINAL_DEPLOYMENT_STATES):
        raise OtaError("invalid_state", f"Abort deployment #{instance.pk} before deleting it.", status=409)
    model_delete(instance=instance, actor=actor)
