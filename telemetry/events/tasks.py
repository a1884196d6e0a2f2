"""Alert webhook delivery with retries and exponential backoff (full jitter)."""

from __future__ import annotations

import random

from celery import shared_task

from telemetry.events.webhooks import alert_webhook_give_up, alert_webhook_send

MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 600.0


def backoff_s(retries: int) -> float:
    """Delay before retry number `retries + 1`: up to 5 s, 10 s, 20 s ... capped at 10 min."""
    return random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**retries))


@shared_task(bind=True, max_retries=MAX_ATTEMPTS - 1, acks_late=True)
def deliver_alert_webhook(self, alert_id: int) -> bool:
    error = alert_webhook_send(alert_id=alert_id)
    if not error:
        return True
    if self.request.retries >= self.max_retries:
        alert_webhook_give_up(alert_id=alert_id)
        return False
    raise self.retry(countdown=backoff_s(self.request.retries))
