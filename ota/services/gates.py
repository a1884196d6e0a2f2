"""Quality gates of the rollout engine: build a wave's cohorts, evaluate (ota.gates), act on the verdict.

Per hardware model (each gets its own artifact build): the candidate cohort is the wave's devices
that finished on the new release, read from their quality windows of the new version since the
wave started; the control cohort is devices of the same hardware still on another version over
the same period: at the candidates' sites when enough of them report, else anywhere. The gate of
the wave is the worst of its hardware groups.

The verdict is stored in `Deployment.gate_results` (one entry per wave, replaced on each
evaluation while it waits) and only a decision is audited, so repeated ticks stay cheap and say
the same thing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from devices.models import Device, DeviceState
from fleet.audit import Actor, audit_record
from ota import gates
from ota.models import Deployment, DeviceUpdate
from ota.services import lifecycle
from ota.services.lifecycle import ENGINE
from ota.services.offers import builds
from telemetry.quality.selectors import quality_summary
from telemetry.quality.summary import QualitySummary

CONTROL_MAX = 500  # control devices read per hardware group: enough for the rates, bounded cost
# The control's windows count from this long before the wave started: nothing changed on those
# cameras, and a wave that finishes within one telemetry interval still has a control to compare.
CONTROL_LOOKBACK = dt.timedelta(minutes=15)


def _artifact(by_hardware: dict, hardware_pk: int | None) -> str:
    _, artifact = by_hardware.get(hardware_pk) or by_hardware[None]
    return f"{artifact.name}@{artifact.version} ({artifact.sha256[:12]})"


def _cohorts(deployment: Deployment, wave: int, since: dt.datetime, *, shadow: bool) -> list[dict[str, Any]]:
    """Per hardware model of the wave: candidate and control summaries.

    In shadow the candidate is the release's shadow windows on the wave's cameras and the control is
    those same cameras' active model over the same frames: the best control there is.
    """
    release = deployment.release
    model, version = release.artifact.name, release.version
    rows = DeviceUpdate.objects.filter(
        deployment=deployment, wave=wave, state="shadow" if shadow else "succeeded"
    ).values_list("device_id", "device__hardware_model_id", "device__hardware_model__name", "device__site_id")
    by_hardware = builds(release)  # one artifact per hardware model: cohorts compare per artifact
    groups: dict[tuple[int | None, str | None], dict[str, Any]] = {}
    for device_pk, hw_pk, hw_name, site_pk in rows:
        g = groups.setdefault((hw_pk, hw_name), {"devices": [], "sites": set()})
        g["devices"].append(device_pk)
        if site_pk is not None:
            g["sites"].add(site_pk)
    out = []
    if shadow:
        for (hw_pk, hw_name), g in sorted(groups.items(), key=lambda kv: str(kv[0][1])):
            candidate = quality_summary(
                device_pks=g["devices"], role="shadow", model=model, version=version, since=since
            )
            control = quality_summary(device_pks=g["devices"], exclude_version=version, since=since)
            out.append(
                {
                    "hardware_model": hw_name,
                    "artifact": _artifact(by_hardware, hw_pk),
                    "candidate": candidate,
                    "control": control,
                    "scope": "same_cameras",
                }
            )
        return out
    # Every device that took the new model in this deployment: never a control (a subquery: thousands).
    updated = DeviceUpdate.objects.filter(deployment=deployment, state__in=lifecycle.TOOK_NEW_MODEL).values(
        "device_id"
    )
    min_devices = deployment.gates.get("min_devices", gates.DEFAULTS["min_devices"])
    for (hw_pk, hw_name), g in sorted(groups.items(), key=lambda kv: str(kv[0][1])):
        candidate = quality_summary(device_pks=g["devices"], model=model, version=version, since=since)
        pool = Device.objects.filter(hardware_model_id=hw_pk, state=DeviceState.ACTIVE).exclude(
            pk__in=updated
        )
        same_sites = list(
            pool.filter(site_id__in=g["sites"]).order_by("pk").values_list("pk", flat=True)[:CONTROL_MAX]
        )
        control_since = since - CONTROL_LOOKBACK
        control, scope = (
            quality_summary(device_pks=same_sites, exclude_version=version, since=control_since),
            "same_sites",
        )
        if len(control.devices) < min_devices:  # too few at the same sites: the same hardware anywhere
            anywhere = list(pool.order_by("pk").values_list("pk", flat=True)[:CONTROL_MAX])
            control, scope = (
                quality_summary(device_pks=anywhere, exclude_version=version, since=control_since),
                "same_hardware",
            )
        out.append({"hardware_model": hw_name, "artifact": _artifact(by_hardware, hw_pk), "candidate": candidate,
                    "control": control, "scope": scope})  # fmt: skip
    return out


def _reason(
    result: dict[str, Any], cohort: dict[str, Any], check: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """The machine-readable reason of a failed gate, and the line for `state_reason`."""
    reason = {
        "code": "gate_failed",
        "wave": result["wave"],
        "metric": check["metric"],
        "hardware_model": cohort["hardware_model"],
        "artifact": cohort["artifact"],
        "cohorts": {
            "candidate": {"version": result["version"], **cohort["candidate"]},
            "control": {"scope": cohort["control_scope"], **cohort["control"]},
        },
        **{k: check[k] for k in ("label", "candidate", "control", "change", "threshold") if k in check},
    }
    what = check["metric"] + (f"[{check['label']}]" if "label" in check else "")
    numbers = f"candidate {check.get('candidate')} vs control {check.get('control')}"
    if "change" in check:
        numbers += f" (change {check['change']:+.1%}, limit {check['threshold']:g})"
    elif "threshold" in check:
        numbers = f"candidate {check.get('candidate')} (limit {check['threshold']:g})"
    line = (
        f"gate_failed: {what} on wave {result['wave']} ({result['label']}), "
        f"hardware {cohort['hardware_model']}: {numbers}; "
        f"{cohort['candidate']['devices']} candidate vs {cohort['control']['devices']} control device(s)"
    )
    return reason, line


def gate_evaluate(
    *, deployment: Deployment, wave: int, now: dt.datetime, shadow: bool = False
) -> dict[str, Any]:
    """The gate of `wave` now: {"wave", "label", "state", "cohorts": [...], "reason"?}. Reads only."""
    since = deployment.wave_started_at or now
    label = next((p["label"] for p in deployment.plan if p["wave"] == wave), str(wave))
    result: dict[str, Any] = {
        "wave": wave,
        "label": label,
        "version": deployment.release.version,
        "mode": "shadow" if shadow else "active",
        "since": since.isoformat(),
        "evaluated_at": now.isoformat(),
        "cohorts": [],
    }
    verdicts = []
    for group in _cohorts(deployment, wave, since, shadow=shadow):
        cand: QualitySummary = group["candidate"]
        ctrl: QualitySummary = group["control"]
        verdict, checks = gates.evaluate(cand, ctrl, deployment.gates, shadow=shadow)
        verdicts.append(verdict)
        result["cohorts"].append(
            {
                "hardware_model": group["hardware_model"],
                "artifact": group["artifact"],
                "state": verdict,
                "candidate": cand.as_dict(),
                "control": ctrl.as_dict(),
                "control_scope": group["scope"],
                "checks": [c.as_dict() for c in checks],
            }
        )
    if not verdicts:
        result["state"] = "waiting"
        result["detail"] = (
            "no camera of this wave runs the release in shadow"
            if shadow
            else "no device of this wave finished on the new release"
        )
    else:
        result["state"] = (
            "failed" if "failed" in verdicts else ("waiting" if "waiting" in verdicts else "passed")
        )
    if result["state"] == "failed":
        cohort = next(c for c in result["cohorts"] if c["state"] == "failed")
        check = next(c for c in cohort["checks"] if c["state"] == "failed")
        result["reason"], result["reason_text"] = _reason(result, cohort, check)
    return result


def _store(deployment: Deployment, result: dict[str, Any]) -> None:
    kept = [r for r in deployment.gate_results if r.get("wave") != result["wave"]]
    deployment.gate_results = [*kept, result]
    deployment.save(update_fields=["gate_results", "updated_at"])


def current_gate(deployment: Deployment, wave: int) -> dict[str, Any] | None:
    return next((r for r in deployment.gate_results if r.get("wave") == wave), None)


def gate_check(
    *, deployment: Deployment, wave: int, now: dt.datetime, soak_end: dt.datetime, shadow: bool = False
) -> bool:
    """The engine's question before it opens the next wave: may it? Stops the rollout on a failure.

    True when the wave's gate passed (or an operator overrode it by resuming); False while it waits
    or after it failed (the deployment is then paused, or aborted when gates.on_fail says so).
    """
    if not deployment.gates:
        return True
    previous = current_gate(deployment, wave)
    if previous is not None and previous["state"] in ("passed", "overridden"):
        return True
    result = gate_evaluate(deployment=deployment, wave=wave, now=now, shadow=shadow)
    _store(deployment, result)
    if result["state"] == "passed":
        audit_record(actor=ENGINE, action="deployment.gate_passed", instance=deployment, after={"wave": wave})
        return True
    if result["state"] == "failed":
        audit_record(
            actor=ENGINE, action="deployment.gate_failed", instance=deployment, after=result["reason"]
        )
        if deployment.gates.get("on_fail") == "abort":
            lifecycle.abort(
                deployment=deployment,
                rollback=deployment.auto_rollback,
                reason=result["reason_text"],
                now=now,
                actor=ENGINE,
            )
        else:
            lifecycle.pause(deployment=deployment, reason=result["reason_text"], now=now, actor=ENGINE)
        return False
    wait = deployment.gates.get("max_wait_s")
    if wait and now >= soak_end + dt.timedelta(seconds=wait):
        detail = "; ".join(
            c.get("detail", "")
            for cohort in result["cohorts"]
            for c in cohort["checks"]
            if c["state"] == "waiting"
        ) or result.get("detail", "")
        lifecycle.pause(
            deployment=deployment,
            reason=f"gate_waiting: wave {wave} has not enough quality samples after {wait}s ({detail})",
            now=now,
            actor=ENGINE,
        )
    return False


def gate_override(*, deployment: Deployment, actor: Actor, now: dt.datetime) -> None:
    """Resuming after a gate stopped the rollout accepts that wave's gate as it stands."""
    result = current_gate(deployment, deployment.current_wave)
    stopped_by_gate = deployment.state_reason.startswith(("gate_failed", "gate_waiting"))
    if result is None or result["state"] in ("passed", "overridden") or not stopped_by_gate:
        return
    _store(
        deployment,
        {**result, "state": "overridden", "overridden_from": result["state"], "overridden_by": str(actor)},
    )
    audit_record(
        actor=actor,
        action="deployment.gate_overridden",
        instance=deployment,
        after={"wave": deployment.current_wave},
    )
