"""Alert rules: which events match, raising Alert rows, acknowledging them."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from fleet.audit import Actor, audit_record, snapshot
from fleet.errors import Conflict
from fleet.services import model_create, model_delete, model_update
from telemetry.models.events import Alert, AlertRule, Event, WebhookState


def in_quiet_hours(local: dt.time, start: dt.time | None, end: dt.time | None) -> bool:
    """[start, end) in local time; wraps midnight when end <= start (22:00-06:00)."""
    if start is None or end is None:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def rule_matches(rule: AlertRule, event: Event, *, site_ids: set[int], group_ids: set[int]) -> bool:
    """Label, score, scope and quiet hours. `site_ids`/`group_ids`: the rule's scope, prefetched."""
    if not rule.enabled or event.score < rule.min_score:
        return False
    if rule.labels and event.label not in rule.labels:
        return False
    device = event.device
    if (site_ids or group_ids) and not (
        device.site_id in site_ids or any(g.pk in group_ids for g in device.groups.all())
    ):
        return False
    tz = zoneinfo.ZoneInfo(device.site.timezone if device.site else "UTC")
    return not in_quiet_hours(event.start.astimezone(tz).time(), rule.quiet_start, rule.quiet_end)


def alerts_evaluate(*, event_pks: Iterable[int]) -> list[Alert]:
    """Raise one alert per (matching rule, event); already raised pairs are skipped. Webhooks after commit."""
    rules = list(AlertRule.objects.filter(enabled=True).prefetch_related("sites", "groups"))
    if not rules:
        return []
    scopes = {r.pk: ({s.pk for s in r.sites.all()}, {g.pk for g in r.groups.all()}) for r in rules}
    events = (
        Event.objects.filter(pk__in=list(event_pks))
        .select_related("device__site")
        .prefetch_related("device__groups")
    )
    candidates = [
        Alert(
            rule=rule,
            event=event,
            device_id=event.device_id,
            webhook_state=WebhookState.PENDING if rule.webhook_url else WebhookState.NONE,
        )
        for event in events
        for rule in rules
        if rule_matches(rule, event, site_ids=scopes[rule.pk][0], group_ids=scopes[rule.pk][1])
    ]
    if not candidates:
        return []
    event_ids = {a.event_id for a in candidates}
    with transaction.atomic():
        before = set(Alert.objects.filter(event_id__in=event_ids).values_list("rule_id", "event_id"))
        Alert.objects.bulk_create(
            [a for a in candidates if (a.rule_id, a.event_id) not in before], ignore_conflicts=True
        )
        # Only rows this call created get a webhook: a redelivered event must not page twice.
        created = [
            a
            for a in Alert.objects.filter(event_id__in=event_ids, rule_id__in={a.rule_id for a in candidates})
            if (a.rule_id, a.event_id) not in before
        ]
        pending = [a.pk for a in created if a.webhook_state == WebhookState.PENDING]
        if pending:
            from telemetry.events.tasks import deliver_alert_webhook

            transaction.on_commit(lambda: [deliver_alert_webhook.delay(pk) for pk in pending])
    return created


@transaction.atomic
def alert_acknowledge(*, actor: Actor, alert: Alert) -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.acknowledged_at is not None:
        raise Conflict("already_acknowledged", f"Alert {alert.pk} was acknowledged already.")
    before = snapshot(alert)
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = actor.user
    alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
    audit_record(
        actor=actor, action="alert.acknowledge", instance=alert, before=before, after=snapshot(alert)
    )
    return alert


def alert_rule_create(*, actor: Actor, data: dict) -> AlertRule:
    return model_create(model=AlertRule, actor=actor, data=data)


def alert_rule_update(*, actor: Actor, instance: AlertRule, data: dict) -> AlertRule:
    return model_update(instance=instance, actor=actor, data=data)


def alert_rule_delete(*, actor: Actor, instance: AlertRule) -> None:
    model_delete(instance=instance, actor=actor)


def alerts_acknowledge(*, actor: Actor, alert_pks: list[int]) -> int:
    """Acknowledge many alerts at once; the ones acknowledged already are skipped. Returns how many."""
    done = 0
    with transaction.atomic():
        for alert in Alert.objects.filter(pk__in=alert_pks, acknowledged_at__isnull=True).order_by("pk"):
            alert_acknowledge(actor=actor, alert=alert)
            done += 1
    return done
