"""Celery tasks: the rollout engine's beat tick (thin: the work is in ota.services.rollout)."""

from celery import shared_task

from ota.services import rollout


@shared_task(name="ota.tasks.rollout_tick", ignore_result=True)
def rollout_tick() -> int:
    """Step every running or due deployment. Idempotent; concurrent ticks skip each other's rows."""
    return rollout.tick()
