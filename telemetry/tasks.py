"""Celery beat tasks of telemetry (schedules: CELERY_BEAT_SCHEDULE in settings). Thin: they call services."""

from celery import shared_task

# Celery's autodiscovery imports only <app>.tasks: register the sub-packages' tasks from here.
from telemetry.commands import tasks as _commands_tasks  # noqa: F401
from telemetry.events import tasks as _events_tasks  # noqa: F401
from telemetry.metrics.partitions import metrics_partitions_ensure as _partitions_ensure
from telemetry.metrics.rollups import metrics_rollup_recent
from telemetry.models.metrics import Resolution
from telemetry.quality.services import quality_rollup_recent
from telemetry.retention import telemetry_retention as _retention
from telemetry.status.services import status_sweep as _status_sweep


@shared_task(ignore_result=True)
def status_sweep() -> int:
    """Mark devices silent for longer than STATUS_SILENT_AFTER_S offline."""
    return _status_sweep()


@shared_task(ignore_result=True)
def metrics_rollup_minutes() -> int:
    return metrics_rollup_recent(resolution=Resolution.MINUTE)


@shared_task(ignore_result=True)
def metrics_rollup_hours() -> int:
    return metrics_rollup_recent(resolution=Resolution.HOUR)


@shared_task(ignore_result=True)
def quality_rollup_hours() -> int:
    return quality_rollup_recent()


@shared_task(ignore_result=True)
def metrics_partitions_ensure() -> list[str]:
    return _partitions_ensure()


@shared_task(ignore_result=True)
def telemetry_retention() -> dict[str, int]:
    return _retention()
