"""Bandwidth policies (CRUD; every change republishes down/config), device configs, data usage."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from devices.models import Device
from fleet.api.pagination import IdCursorPagination
from fleet.api.serializers import StrictModelSerializer
from fleet.api.viewsets import ServiceModelViewSet
from fleet.errors import FleetError
from protocol.vocab import UPLINK_CLASSES
from telemetry.filters import BandwidthPolicyFilterSet
from telemetry.models.policies import BandwidthPolicy, DataUsage, DeviceConfigState
from telemetry.policies import services
from telemetry.policies.usage import data_usage


class BandwidthPolicySerializer(StrictModelSerializer):
    device = serializers.SlugRelatedField(
        slug_field="device_id", queryset=Device.objects.all(), required=False, allow_null=True
    )
    classes_allowed = serializers.ListField(
        child=serializers.ChoiceField(choices=UPLINK_CLASSES), required=False
    )
    class_priority = serializers.ListField(
        child=serializers.ChoiceField(choices=UPLINK_CLASSES), required=False
    )
    detection = serializers.DictField(required=False, help_text="Detection settings for down/config.")
    scope = serializers.CharField(read_only=True)

    class Meta:
        model = BandwidthPolicy
        fields = [
            "id",
            "name",
            "scope",
            "device",
            "group",
            "priority",
            "max_kbps",
            "daily_budget_mb",
            "classes_allowed",
            "class_priority",
            "quiet_start",
            "quiet_end",
            "metered",
            "max_snapshot_bytes",
            "max_clip_bytes",
            "detection",
            "created_at",
            "updated_at",
        ]


class BandwidthPolicyViewSet(ServiceModelViewSet):
    """Per device > per group (highest priority) > fleet default. Changes reach devices as retained down/config."""

    queryset = BandwidthPolicy.objects.select_related("device", "group")
    serializer_class = BandwidthPolicySerializer
    filterset_class = BandwidthPolicyFilterSet
    services = (services.policy_create, services.policy_update, services.policy_delete)


class DeviceConfigSerializer(serializers.ModelSerializer):
    device = serializers.SlugRelatedField(slug_field="device_id", read_only=True)

    class Meta:
        model = DeviceConfigState
        fields = ["device", "revision", "config", "policy", "published_at"]
        read_only_fields = fields


class DeviceCursorPagination(IdCursorPagination):
    ordering = "-device_id"  # the row's primary key


class DeviceConfigViewSet(viewsets.ReadOnlyModelViewSet):
    """The desired config last published to each device (down/config, retained)."""

    queryset = DeviceConfigState.objects.select_related("device")
    serializer_class = DeviceConfigSerializer
    lookup_field = "device__device_id"
    lookup_url_kwarg = "device_id"
    pagination_class = DeviceCursorPagination
    filterset_fields = ["policy"]


class DataUsageSerializer(serializers.ModelSerializer):
    device = serializers.SlugRelatedField(slug_field="device_id", read_only=True)

    class Meta:
        model = DataUsage
        fields = ["id", "device", "day", "uplink_class", "bytes"]
        read_only_fields = fields


class DataUsageViewSet(viewsets.ReadOnlyModelViewSet):
    """Verified upload bytes per device, local day and class; `summary` adds what devices report."""

    queryset = DataUsage.objects.select_related("device")
    serializer_class = DataUsageSerializer
    filterset_fields = {
        "day": ["exact", "gte", "lte"],
        "uplink_class": ["exact"],
        "device__device_id": ["exact"],
    }

    @extend_schema(
        parameters=[
            OpenApiParameter("device", str, required=True, description="Device id."),
            OpenApiParameter("days", int, description="Local days back from today, 1..92 (default 7)."),
        ],
        filters=False,
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def summary(self, request):
        device = (
            Device.objects.select_related("site").filter(device_id=request.query_params.get("device")).first()
        )
        if device is None:
            raise FleetError(
                "not_found", "No such device.", fields={"device": ["Unknown device id."]}, status=404
            )
        days = request.query_params.get("days", "7")
        if not days.isdigit() or not 1 <= int(days) <= 92:
            raise FleetError("validation_error", "Invalid input.", fields={"days": ["1..92."]})
        rows = data_usage(device=device, days=int(days))
        return Response(
            {"device": device.device_id, "days": [{**r, "day": r["day"].isoformat()} for r in rows]}
        )
