"""Every write to DeviceStatus: from up/status, from a quiet device speaking again, from the sweep."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from devices.models import Device
from devices.status_services import devices_report_versions
from ota.services import device_came_online
from telemetry.ingest.types import Inbound
from telemetry.models import DeviceStatus
from telemetry.models.status import StatusReason

_STATUS_FIELDS = [
    "online", "since", "reason", "status_at", "hardware_model", "uptime_s", "config_revision", "faults",
]  # fmt: skip


def status_apply(*, items: list[Inbound]) -> int:
    """Apply birth (online) and will/shutdown (offline) messages; the last one per device wins.

    `since` moves only when online/offline actually changes. Also records the agent and
    model versions the device reports on the registry row. Returns the rows written.
    """
    latest: dict[int, Inbound] = {}
    for item in items:  # arrival order
        latest[item.device_pk] = item
    existing = {s.device_id: s for s in DeviceStatus.objects.filter(device_id__in=list(latest))}
    rows = []
    for pk in sorted(latest):  # a fixed order, so two replicas lock rows the same way
        item = latest[pk]
        message = item.message
        online = message.state == "online"
        before = existing.get(pk)
        reason = StatusReason.BIRTH if online else (message.reason or StatusReason.REPORTED)
        rows.append(
            DeviceStatus(
                device_id=pk,
                online=online,
                since=item.received_at if before is None or before.online != online else before.since,
                reason=reason[:200],
                status_at=item.received_at,
                hardware_model=(message.hardware_model or (before.hardware_model if before else ""))[:128],
                uptime_s=message.uptime_s,
                config_revision=message.config_revision,
                faults=list(message.faults) if online else [],
            )
        )
    DeviceStatus.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["device"], update_fields=_STATUS_FIELDS
    )
    devices_report_versions(
        reports={pk: (item.message.agent_version, item.message.model_version) for pk, item in latest.items()}
    )
    # A device back online gets the offers of its unfinished updates again (none missed). "Back":
    # no birth on record (none, or liveness only inferred from traffic), offline before, or offline
    # earlier in this batch. A status repeated while online (e.g. after a model change) must not
    # re-send an offer the device is answering.
    went_offline = {item.device_pk for item in items if item.message.state != "online"}
    inferred = {StatusReason.SEEN, StatusReason.RESUMED}
    returned = [
        pk
        for pk, item in latest.items()
        if item.message.state == "online"
        and (
            pk not in existing
            or not existing[pk].online
            or existing[pk].reason in inferred
            or pk in went_offline
        )
    ]
    for device in Device.objects.filter(pk__in=returned).order_by("pk"):
        device_came_online(device)
    return len(rows)


def status_mark_resumed(*, device_pks: list[int], seen_at: dt.datetime) -> int:
    """Devices that were quiet and now speak: back online if the sweep had marked them silent,
    online for the first time if no status was ever recorded (their birth predates this ingest)."""
    if not device_pks:
        return 0
    resumed = DeviceStatus.objects.filter(
        device_id__in=device_pks, online=False, reason=StatusReason.SILENT
    ).update(online=True, reason=StatusReason.RESUMED, since=seen_at)
    known = set(DeviceStatus.objects.filter(device_id__in=device_pks).values_list("device_id", flat=True))
    fresh = [
        DeviceStatus(device_id=pk, online=True, since=seen_at, reason=StatusReason.SEEN)
        for pk in device_pks
        if pk not in known
    ]
    DeviceStatus.objects.bulk_create(fresh, ignore_conflicts=True)
    return resumed + len(fresh)


@transaction.atomic
def status_sweep(*, now: dt.datetime | None = None, silent_after_s: int | None = None) -> int:
    """Mark online devices not heard from for `silent_after_s` offline (reason "silent"); returns how many."""
    now = now or timezone.now()
    silent_after_s = settings.STATUS_SILENT_AFTER_S if silent_after_s is None else silent_after_s
    cutoff = now - dt.timedelta(seconds=silent_after_s)
    return DeviceStatus.objects.filter(online=True, device__last_seen_at__lt=cutoff).update(
        online=False, reason=StatusReason.SILENT, since=now
    )
