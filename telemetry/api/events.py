"""Events (read-only), alerts (list, acknowledge) and alert rules (CRUD)."""

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.models import Role
from fleet.api.serializers import StrictModelSerializer
from fleet.api.viewsets import ServiceModelViewSet
from fleet.audit import Actor
from telemetry.events import alerts
from telemetry.events.filters import AlertFilterSet, AlertRuleFilterSet, EventFilterSet
from telemetry.media.services import media_url
from telemetry.models.events import Alert, AlertRule, Event
from telemetry.models.media import Media, MediaState


class EventMediaSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Short-lived GET URL (5 minutes).")

    class Meta:
        model = Media
        fields = ["id", "kind", "content_type", "size", "sha256", "verified_at", "url"]

    def get_url(self, obj) -> str | None:
        return media_url(obj)


class EventSerializer(serializers.ModelSerializer):
    device = serializers.SlugRelatedField(slug_field="device_id", read_only=True)
    media = EventMediaSerializer(source="verified_media", many=True, read_only=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "event_id",
            "device",
            "camera",
            "label",
            "score",
            "bbox",
            "start",
            "end",
            "zone",
            "media_refs",
            "media",
            "received_at",
            "updated_at",
            "reviewed_at",
        ]
        read_only_fields = fields


def event_queryset():
    verified = Media.objects.filter(state=MediaState.VERIFIED).order_by("id")
    return Event.objects.select_related("device").prefetch_related(
        Prefetch("media", queryset=verified, to_attr="verified_media")
    )


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    """Detections from the cameras, newest first; filter by site, group, device, label, score and time."""

    queryset = event_queryset()
    serializer_class = EventSerializer
    filterset_class = EventFilterSet


class AlertSerializer(serializers.ModelSerializer):
    device = serializers.SlugRelatedField(slug_field="device_id", read_only=True)
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    event = EventSerializer(read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "rule_name",
            "device",
            "event",
            "created_at",
            "acknowledged_at",
            "acknowledged_by",
            "webhook_state",
            "webhook_attempts",
            "webhook_error",
        ]
        read_only_fields = fields


class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts raised by rules; operators acknowledge them."""

    queryset = Alert.objects.select_related("rule", "device", "acknowledged_by").prefetch_related(
        Prefetch("event", queryset=event_queryset())
    )
    serializer_class = AlertSerializer
    filterset_class = AlertFilterSet
    write_role = Role.OPERATOR

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        alert = alerts.alert_acknowledge(actor=Actor.from_request(request), alert=self.get_object())
        return Response(AlertSerializer(self.get_queryset().get(pk=alert.pk)).data)


class AlertRuleSerializer(StrictModelSerializer):
    labels = serializers.ListField(
        child=serializers.CharField(max_length=128), required=False, max_length=100
    )
    webhook_secret = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="Signs webhook requests; never shown.",
    )
    has_webhook_secret = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "name",
            "labels",
            "min_score",
            "sites",
            "groups",
            "quiet_start",
            "quiet_end",
            "webhook_url",
            "webhook_secret",
            "has_webhook_secret",
            "enabled",
            "created_at",
            "updated_at",
        ]

    def get_has_webhook_secret(self, obj) -> bool:
        return bool(obj.webhook_secret)


class AlertRuleViewSet(ServiceModelViewSet):
    queryset = AlertRule.objects.prefetch_related("sites", "groups")
    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilterSet
    services = (alerts.alert_rule_create, alerts.alert_rule_update, alerts.alert_rule_delete)
