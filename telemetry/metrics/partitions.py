"""Daily range partitions of telemetry_metricsample on PostgreSQL (no-ops on SQLite).

Migration 0001 creates the partitioned parent and a DEFAULT partition. Day
partitions `telemetry_metricsample_pYYYYMMDD` are created ahead by a beat task
(and when the ingest starts); a day's rows that landed in the default partition
before their partition existed are moved into it as it is attached. Retention
drops whole days: a DROP TABLE, not a DELETE of millions of rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

log = logging.getLogger(__name__)

PARENT = "telemetry_metricsample"
DEFAULT = f"{PARENT}_default"
_NAME = re.compile(rf"^{PARENT}_p(\d{{8}})$")


def partitioned() -> bool:
    return connection.vendor == "postgresql"


def partition_name(day: dt.date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def _bound(day: dt.date) -> str:
    # A literal, not a bind parameter: DDL takes none. Built from a date, so it is safe.
    return f"'{day.isoformat()} 00:00:00+00'"


def partition_days() -> dict[dt.date, str]:
    """Existing day partitions, by day."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [PARENT],
        )
        names = [row[0] for row in cursor.fetchall()]
    days = {}
    for name in names:
        match = _NAME.match(name)
        if match:
            days[dt.datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return days


def metrics_partitions_ensure(
    *, days_ahead: int | None = None, days_back: int = 1, today: dt.date | None = None
) -> list[str]:
    """Create the day partitions from `days_back` days ago to `days_ahead` days ahead; returns new names."""
    if not partitioned():
        return []
    days_ahead = settings.METRICS_PARTITIONS_AHEAD_DAYS if days_ahead is None else days_ahead
    today = today or timezone.now().date()
    existing = partition_days()
    created = []
    for offset in range(-days_back, days_ahead + 1):
        day = today + dt.timedelta(days=offset)
        if day in existing:
            continue
        name, lower, upper = partition_name(day), _bound(day), _bound(day + dt.timedelta(days=1))
        with transaction.atomic(), connection.cursor() as cursor:
            # Attaching checks the default partition holds no row of this day: move them first.
            cursor.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)")
            cursor.execute(
                f"WITH moved AS (DELETE FROM {DEFAULT} WHERE ts >= {lower} AND ts < {upper} RETURNING *) "  # noqa: S608 - literals built from dates
                f"INSERT INTO {name} SELECT * FROM moved"
            )
            cursor.execute(
                f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})"
            )
        created.append(name)
    if created:
        log.info("metric sample partitions created: %s", ", ".join(created))
    return created


def metrics_partitions_drop(*, before: dt.date) -> list[str]:
    """Drop the day partitions that end on or before `before` (midnight UTC); returns their names."""
    if not partitioned():
        return []
    dropped = []
    for day, name in sorted(partition_days().items()):
        if day + dt.timedelta(days=1) <= before:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {name}")
            dropped.append(name)
    return dropped
