"""Celery tasks of the devices app."""

from celery import shared_task

from devices.revocation import crl_refresh as _crl_refresh


@shared_task(name="devices.tasks.crl_refresh")
def crl_refresh() -> int:
    """Beat: keep Mosquitto's CRL fresh and retry revocations the broker has not confirmed."""
    return _crl_refresh()
