"""Detection events from up/events: bulk upsert by (device, event_id), then alert rules after commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from devices.models import Device
from fleet.audit import Actor
from fleet.models import AuditEntry
from protocol.up import Detection
from telemetry.models.events import Event

UPDATABLE = ("end", "media_refs", "updated_at")


def to_datetime(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _merge_refs(old: list[dict], new: list[dict]) -> list[dict]:
    seen = {(r["kind"], r["sha256"]) for r in old}
    return old + [r for r in new if (r["kind"], r["sha256"]) not in seen]


def events_ingest(*, device: Device, detections: Sequence[Detection]) -> list[int]:
    """Insert new events and update known ones (end, media); returns the touched event pks.

    Idempotent: a redelivered message changes nothing, a start message arriving after its
    end message never clears the end. Alert rules run after the commit.
    """
    latest: dict[str, Detection] = {}
    for detection in detections:  # the last copy of an event_id in a batch wins
        latest[detection.event_id] = detection
    now = timezone.now()
    with transaction.atomic():
        existing = {
            e.event_id: e
            for e in Event.objects.select_for_update().filter(device=device, event_id__in=list(latest))
        }
        changed = []
        for event_id, d in latest.items():
            event = existing.get(event_id)
            if event is None:
                continue
            refs = _merge_refs(event.media_refs, [{"kind": m.kind, "sha256": m.sha256} for m in d.media])
            end = to_datetime(d.end) if d.end is not None else event.end
            if end != event.end or refs != event.media_refs:
                event.end, event.media_refs, event.updated_at = end, refs, now
                changed.append(event)
        Event.objects.bulk_update(changed, UPDATABLE)
        new = [
            Event(
                device=device,
                event_id=d.event_id,
                camera=d.camera,
                label=d.label,
                score=d.score,
                bbox=list(d.bbox),
                start=to_datetime(d.start),
                end=to_datetime(d.end) if d.end is not None else None,
                zone=d.zone or "",
                media_refs=[{"kind": m.kind, "sha256": m.sha256} for m in d.media],
            )
            for event_id, d in latest.items()
            if event_id not in existing
        ]
        # ignore_conflicts: a concurrent ingest replica may have inserted the same event first.
        Event.objects.bulk_create(new, ignore_conflicts=True)
        pks = list(
            Event.objects.filter(device=device, event_id__in=[e.event_id for e in new]).values_list(
                "pk", flat=True
            )
        )
        touched = pks + [e.pk for e in changed]
        if touched:
            from telemetry.events.alerts import alerts_evaluate

            transaction.on_commit(lambda: alerts_evaluate(event_pks=touched))
    return touched


def events_mark_reviewed(*, actor: Actor, event_pks: list[int], reviewed: bool = True) -> int:
    """Mark events reviewed (or back to unreviewed) by `actor`; one audit entry per event changed."""
    with transaction.atomic():
        events = list(
            Event.objects.select_for_update()
            .filter(pk__in=event_pks, reviewed_at__isnull=reviewed)
            .order_by("pk")
        )
        now = timezone.now()
        for event in events:
            event.reviewed_at, event.reviewed_by = (now, actor.user) if reviewed else (None, None)
        Event.objects.bulk_update(events, ["reviewed_at", "reviewed_by"])
        AuditEntry.objects.bulk_create(
            AuditEntry(
                actor=actor.user,
                actor_label=actor.name[:150],
                source=actor.source,
                action="event.review" if reviewed else "event.unreview",
                object_type="event",
                object_id=str(e.pk),
                object_repr=str(e)[:200],
                after={"reviewed_at": e.reviewed_at.isoformat() if e.reviewed_at else None},
            )
            for e in events
        )
    return len(events)
