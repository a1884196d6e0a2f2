"""Device reports (up/ota) and reconnects: the per-device state machine, never moving backwards."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from devices.models import Device
from ota.models import FAILED_STATES, Deployment, DeploymentState, DeviceUpdate
from ota.services import rollout
from ota.services.offers import offers_send, shadow_request
from protocol.up import OtaReport
from protocol.vocab import OTA_STATES, OTA_TERMINAL_STATES

log = logging.getLogger(__name__)

# Order of progress; every terminal state ranks last, so nothing leaves a terminal state.
RANK = {
    state: (len(OTA_STATES) if state in OTA_TERMINAL_STATES else OTA_STATES.index(state))
    for state in OTA_STATES
}


def deployment_pk(deployment_id: str) -> int | None:
    """ "dep-17" -> 17 (the wire id of a deployment); None for anything else."""
    prefix, _, number = deployment_id.partition("-")
    return int(number) if prefix == "dep" and number.isdigit() and len(number) < 19 else None


def _fields(report: OtaReport, now: dt.datetime) -> dict:
    # A report proves delivery: a device that got the retained offer on reconnect starts its clock now.
    fields: dict = {
        "state": report.state,
        "updated_at": now,
        "delivered_at": Coalesce(F("delivered_at"), Value(now)),
    }
    if report.reason:
        fields["reason"] = report.reason[:300]
    if report.progress is not None:
        fields["progress"] = report.progress
    if report.state in OTA_TERMINAL_STATES:
        fields["finished_at"] = now
    return fields


def report_apply(
    *,
    device_id: str,
    report: OtaReport,
    now: dt.datetime | None = None,
    react: bool = True,
    device_pk: int | None = None,
    serials: dict[int, int] | None = None,
) -> bool:
    """Apply one up/ota report. Duplicates, late and out-of-order reports change nothing.

    One conditional UPDATE on the (deployment, device) unique index: it moves the row only forward
    (from a state of lower rank) and only for the serial that was offered, so a redelivered or older
    report is a no-op. True if it moved. With react=False the caller steps the deployment itself
    (once per batch, see reports_apply); `device_pk` and `serials` ({deployment pk: release serial})
    let a batch skip the lookups.
    """
    now = now or timezone.now()
    pk = deployment_pk(report.deployment_id)
    if pk is None:
        return False
    if serials is None:
        serials = dict(Deployment.objects.filter(pk=pk).values_list("pk", "release__serial"))
    if pk not in serials or (report.serial and report.serial != serials[pk]):
        return False  # unknown deployment, or a report about another release (0: manifest unreadable)
    if device_pk is None:
        device_pk = Device.objects.filter(device_id=device_id).values_list("pk", flat=True).first()
        if device_pk is None:
            return False
    earlier = [s for s in OTA_STATES if RANK[s] < RANK[report.state]]
    fields = _fields(report, now)
    moved = DeviceUpdate.objects.filter(deployment_id=pk, device_id=device_pk, state__in=earlier).update(
        **fields
    )
    if not moved:
        return False
    if react and report.state in OTA_TERMINAL_STATES:
        react_to_finished(pks={pk}, failed={pk} if report.state in FAILED_STATES else set(), now=now)
    return True


def reports_apply(
    *, reports: list[tuple[str, OtaReport, dt.datetime]], device_pks: list[int] | None = None
) -> int:
    """A batch of reports in arrival order, with the same rules as report_apply, in few statements.

    A device's reports in the batch collapse to its furthest one; reports that then say the same
    thing (deployment, state, reason, progress) become one UPDATE over their devices. Each
    deployment with a finished device is then stepped once.
    """
    wanted = {p for p in (deployment_pk(r.deployment_id) for _, r, _ in reports) if p is not None}
    serials = dict(Deployment.objects.filter(pk__in=wanted).values_list("pk", "release__serial"))
    if device_pks is None:
        ids = {device_id for device_id, _, _ in reports}
        by_id = dict(Device.objects.filter(device_id__in=ids).values_list("device_id", "pk"))
        device_pks = [by_id.get(device_id, 0) for device_id, _, _ in reports]
    # A device's reports in one batch collapse to the furthest one (the first of the highest rank):
    # applied in order, every earlier one would be overwritten by it or refused after it anyway, so
    # one UPDATE per device and batch gives the same row (full reports: 5x fewer row writes).
    # Only `progress`, a hint of the downloading state, is not carried over from a collapsed report.
    furthest: dict[tuple[int, int], tuple[int, int]] = {}  # (deployment, device) -> (rank, index)
    for i, ((_, report, _), device_pk) in enumerate(zip(reports, device_pks, strict=True)):
        pk = deployment_pk(report.deployment_id)
        if pk not in serials or not device_pk or (report.serial and report.serial != serials[pk]):
            continue
        rank = RANK[report.state]
        best = furthest.get((pk, device_pk))
        if best is None or rank > best[0]:
            furthest[(pk, device_pk)] = (rank, i)
    groups: dict[tuple, list[int]] = {}
    latest: dict[tuple, tuple[OtaReport, dt.datetime]] = {}
    for (pk, device_pk), (_, i) in furthest.items():
        _, report, received_at = reports[i]
        key = (pk, report.state, report.reason, report.progress)
        groups.setdefault(key, []).append(device_pk)
        latest[key] = (report, received_at)
    finished: set[int] = set()
    failed: set[int] = set()
    moved = 0
    for key, pks in groups.items():
        (pk, state, _, _), (report, received_at) = key, latest[key]
        earlier = [s for s in OTA_STATES if RANK[s] < RANK[state]]
        for i in range(0, len(pks), 900):
            count = DeviceUpdate.objects.filter(
                deployment_id=pk, device_id__in=pks[i : i + 900], state__in=earlier
            ).update(**_fields(report, received_at))
            moved += count
            if count and state in OTA_TERMINAL_STATES:
                finished.add(pk)
            if count and state in FAILED_STATES:
                failed.add(pk)
    react_to_finished(pks=finished, failed=failed, now=timezone.now())
    return moved


def react_to_finished(*, pks: set[int], failed: set[int], now: dt.datetime) -> None:
    """Devices finished: step their running deployments now (thresholds, next devices, next wave)
    rather than at the next tick. skip_locked: a deployment a tick is stepping sees them anyway.

    Successes while the current wave still has devices at work change nothing a step acts on
    (the failure rate only falls, the wave is not done), unless a rate limit (max_concurrent,
    max_per_minute) lets the next devices go: then it steps as before. A 10,000-device rollout
    applies its reports in ~60 batches; this saves a locked step in nearly all of them.
    """
    running = Deployment.objects.filter(pk__in=pks, state=DeploymentState.RUNNING).values_list(
        "pk", "current_wave", "max_concurrent", "max_per_minute"
    )
    for pk, wave, max_concurrent, max_per_minute in running:
        limited = bool(max_concurrent or max_per_minute)
        if pk not in failed and not limited and rollout.wave_busy(pk, wave):
            continue
        rollout.step_by_id(pk=pk, now=now)


def device_came_online(device: Device, *, now: dt.datetime | None = None) -> int:
    """Birth message: re-send the offer of every unfinished update (fresh presigned URL) and start
    the timeout clock of updates that were notified while the device was away. Returns offers sent."""
    now = now or timezone.now()
    rows = (
        DeviceUpdate.objects.filter(
            device=device,
            active=True,
            state__in=rollout.IN_FLIGHT,
            deployment__state__in=(DeploymentState.RUNNING, DeploymentState.PAUSED),
        )
        .select_related("deployment__release__artifact")
        .order_by("id")
    )
    sent = 0
    with transaction.atomic():
        for row in rows:
            if row.delivered_at is None:
                DeviceUpdate.objects.filter(pk=row.pk, delivered_at__isnull=True).update(delivered_at=now)
            shadow = shadow_request(row.deployment, row.wave)
            sent += offers_send(deployment=row.deployment, device_ids=[device.device_id], shadow=shadow)
    return sent
