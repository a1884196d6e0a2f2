"""Writes to the registry that come from devices themselves (via the ingest), not from people.

Kept out of devices/services.py: these run in bulk for every ingest batch, are not
audited (a device reporting its own liveness and versions is not an operator's
change) and do not touch Device.updated_at, which tracks registry edits.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import Q

from devices.models import Device


def devices_mark_seen(
    *,
    seen: dict[int, dt.datetime],
    resolution_s: int = 0,
    last_seen: dict[int, dt.datetime | None] | None = None,
) -> list[int]:
    """Move last_seen_at forward for devices (by pk) heard from; returns the pks it had to update.

    A device whose last_seen_at is already within `resolution_s` of the newest time is
    skipped, so a chatty device costs one UPDATE per window, not one per message. The
    returned pks are the devices that had been quiet (or never seen) until now.
    `last_seen` (pk -> last_seen_at, read by the caller in this transaction) saves the query
    that reads them.
    """
    if not seen:
        return []
    latest = max(seen.values())
    cutoff = latest - dt.timedelta(seconds=resolution_s)
    if last_seen is None:
        stale = sorted(
            Device.objects.filter(pk__in=list(seen))
            .filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=cutoff))
            .values_list("pk", flat=True)
        )
    else:
        stale = sorted(pk for pk in seen if last_seen.get(pk) is None or last_seen[pk] < cutoff)
    if stale:
        # One timestamp for the batch (its newest receive time): the batch spans at most INGEST_BATCH_MS.
        Device.objects.filter(pk__in=stale).update(last_seen_at=latest)
    return stale


def devices_report_versions(*, reports: dict[int, tuple[str, str | None]]) -> int:
    """Record the agent and model versions devices report (pk -> (agent, model or None = unchanged)).

    One UPDATE per distinct version pair, and only rows that differ are written.
    """
    by_pair: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for pk, pair in reports.items():
        by_pair[pair].append(pk)
    updated = 0
    for (agent_version, model_version), pks in sorted(
        by_pair.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        changes = {"agent_version": agent_version[:32]}
        differs = ~Q(agent_version=changes["agent_version"])
        if model_version is not None:
            changes["model_version"] = model_version[:64]
            differs |= ~Q(model_version=changes["model_version"])
        updated += Device.objects.filter(pk__in=sorted(pks)).filter(differs).update(**changes)
    return updated
