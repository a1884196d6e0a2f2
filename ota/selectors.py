"""OTA reads: progress per deployment and per wave in one GROUP BY, cheap enough to poll."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, QuerySet
from django.utils import timezone

from ota.models import FAILED_STATES, TERMINAL, Deployment, DeviceUpdate, Release
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


def deployments_active(*, limit: int = 10) -> list[tuple[Deployment, dict[str, Any]]]:
    """Running, paused and scheduled deployments with their progress (one query each, at most `limit`)."""
    from ota.models import ACTIVE_DEPLOYMENT_STATES

    active = deployment_queryset().filter(state__in=ACTIVE_DEPLOYMENT_STATES).order_by("-id")[:limit]
    return [(d, deployment_progress(deployment=d)) for d in active]


def device_update_history(*, device_pk: int, limit: int = 20) -> QuerySet[DeviceUpdate]:
    """A camera's OTA history, newest first, with the deployment and release it belonged to."""
    return (
        DeviceUpdate.objects.filter(device_id=device_pk)
        .select_related("deployment__release__track")
        .order_by("-id")[:limit]
    )


def failing_updates(*, deployment: Deployment, limit: int = 50) -> QuerySet[DeviceUpdate]:
    """The cameras of a deployment that failed, rolled back or timed out, with their reasons."""
    return (
        DeviceUpdate.objects.filter(deployment=deployment, state__in=FAILED_STATES)
        .select_related("device")
        .order_by("-finished_at", "-id")[:limit]
    )


def release_verification(*, release: Release, now: dt.datetime | None = None) -> tuple[bool, str]:
    """Check a release's manifests now exactly as a device would (the key list in force, the root key):
    the main one for the first hardware model it names, and each per-hardware build's for its own.

    (True, "…") when a device of each would accept its manifest; (False, reason) otherwise.
    """
    from ota.errors import OtaError
    from ota.services.keys import current_keylist, root_public_key
    from protocol.errors import ManifestError
    from protocol.manifest import verify_keylist, verify_manifest

    now = now or timezone.now()
    main_hardware = sorted(release.manifest.get("signed", {}).get("hardware_models") or [""])[0]
    manifests = [(main_hardware, release.manifest)] + [
        (build.hardware_model.name, build.manifest)
        for build in release.artifacts.select_related("hardware_model")
    ]
    hardware = ""  # the manifest being checked: named in the reason when a release has several
    try:
        keylist = verify_keylist(
            current_keylist().document, root_public_key=root_public_key(), current_version=None, now=now
        )
        for hardware, manifest in manifests:
            verify_manifest(
                manifest,
                keylist=keylist,
                installed_serial=None,
                hardware_model=hardware,
                agent_version=release.min_agent_version,
                now=now,
            )
    except ManifestError as exc:
        what = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
        return False, f"the manifest for {hardware}: {what}" if hardware and len(manifests) > 1 else what
    except OtaError as exc:
        return False, exc.message
    builds = f", {len(manifests)} manifests (one per build)" if len(manifests) > 1 else ""
    return (
        True,
        f"signature valid (key {release.signed_by.keyid[:12]}…){builds}, key list v{keylist.version}, "
        f"expires {release.expires_at:%Y-%m-%d}",
    )


def deployment_match_count(*, targets: dict) -> int:
    """How many cameras a target selection matches now (the live count of the create form)."""
    from ota.services.deployments import targets_queryset

    return targets_queryset(targets).count()


def targets_described(*, targets: dict) -> list[str]:
    """A deployment's target selectors in words ("group street", "tag outdoor"), names looked up."""
    from devices.models import DeviceGroup, HardwareModel, SavedFilter, Site

    models = {
        "groups": DeviceGroup,
        "sites": Site,
        "hardware_models": HardwareModel,
        "saved_filters": SavedFilter,
    }
    words = {"groups": "group", "sites": "site", "hardware_models": "hardware", "saved_filters": "saved filter",
             "tags": "tag", "devices": "camera"}  # fmt: skip
    out = []
    for kind, values in (targets or {}).items():
        if kind in models:
            names = dict(models[kind].objects.filter(pk__in=values).values_list("pk", "name"))
            values = [names.get(v, f"#{v} (deleted)") for v in values]
        out.extend(f"{words.get(kind, kind)} {v}" for v in values)
    return out
