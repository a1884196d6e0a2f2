"""Alert webhooks: the signed POST and its verification (for receivers and tests).

Signature: X-Fleet-Signature: sha256=HEX(HMAC-SHA256(secret, f"{timestamp}.".encode() + body)),
with the same unix-seconds timestamp in X-Fleet-Timestamp. The timestamp is inside the
signed bytes, so a receiver that refuses timestamps older than a few minutes cannot be
fed a replayed request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import requests
from django.db.models import F

from telemetry.models.events import Alert, WebhookState

SIGNATURE_HEADER = "X-Fleet-Signature"
TIMESTAMP_HEADER = "X-Fleet-Timestamp"
TIMEOUT_S = 5.0
REPLAY_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, body: bytes, signature: str, timestamp: str, *, now: float | None = None) -> bool:
    """What a receiver does: constant-time compare, and refuse a stale or future timestamp."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > REPLAY_TOLERANCE_S:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature or "")


def payload(alert: Alert) -> dict:
    event, device = alert.event, alert.device
    return {
        "type": "alert",
        "alert_id": alert.pk,
        "created_at": alert.created_at.isoformat(),
        "rule": {"id": alert.rule_id, "name": alert.rule.name},
        "device": {
            "device_id": device.device_id,
            "name": device.name,
            "site": device.site.name if device.site else None,
        },
        "event": {
            "event_id": event.event_id,
            "camera": event.camera,
            "label": event.label,
            "score": event.score,
            "bbox": event.bbox,
            "zone": event.zone,
            "start": event.start.isoformat(),
            "end": event.end.isoformat() if event.end else None,
        },
    }


def alert_webhook_send(*, alert_id: int) -> str:
    """POST the alert once; returns "" on a 2xx, else the error. Counts the attempt on the alert."""
    alert = Alert.objects.select_related("rule", "event", "device__site").get(pk=alert_id)
    if alert.webhook_state != WebhookState.PENDING:
        return ""  # delivered or given up already (a duplicate task)
    body = json.dumps(payload(alert), separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "fleet-webhook/1",
        SIGNATURE_HEADER: sign(alert.rule.webhook_secret, timestamp, body),
        TIMESTAMP_HEADER: str(timestamp),
    }
    try:
        response = requests.post(
            alert.rule.webhook_url, data=body, headers=headers, timeout=TIMEOUT_S, allow_redirects=False
        )
        error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    updates = {"webhook_attempts": F("webhook_attempts") + 1, "webhook_error": error}
    if not error:
        updates["webhook_state"] = WebhookState.DELIVERED
    Alert.objects.filter(pk=alert_id).update(**updates)
    return error


def alert_webhook_give_up(*, alert_id: int) -> None:
    Alert.objects.filter(pk=alert_id, webhook_state=WebhookState.PENDING).update(
        webhook_state=WebhookState.FAILED
    )
