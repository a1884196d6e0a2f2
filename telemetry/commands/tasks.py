from celery import shared_task

from telemetry.commands.services import commands_expire


@shared_task
def expire_commands() -> int:
    """Beat: commands no device answered before their expiry become expired."""
    return commands_expire()
