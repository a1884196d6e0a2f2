"""Reads of model quality: one cohort's windows added up (the rollout gates' input)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from telemetry.models import ModelQualitySample
from telemetry.quality.services import _FIELDS
from telemetry.quality.summary import QualitySummary, summarize


def quality_summary(
    *,
    device_pks: Iterable[int],
    role: str = "active",
    version: str | None = None,
    exclude_version: str | None = None,
    model: str | None = None,
    since: dt.datetime,
    until: dt.datetime | None = None,
) -> QualitySummary:
    """The windows of these devices that ended in [since, until), in `role`, of one model version
    (or of any but one), added up. Raw windows: callers stay within raw retention (days)."""
    pks = list(device_pks)
    if not pks:
        return QualitySummary()
    rows = ModelQualitySample.objects.filter(device_id__in=pks, role=role, end__gte=since)
    if until is not None:
        rows = rows.filter(end__lt=until)
    if model is not None:
        rows = rows.filter(model=model)
    if version is not None:
        rows = rows.filter(version=version)
    if exclude_version is not None:
        rows = rows.exclude(version=exclude_version)
    return summarize(rows.values("device_id", "seconds", "detections", *_FIELDS).iterator(chunk_size=5000))
