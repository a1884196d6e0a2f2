"""GET /api/v1/devices/{device_id}/metrics/: one device's metric series."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.models import Device
from fleet.api.serializers import StrictSerializer
from telemetry.metrics.selectors import DEFAULT_WINDOW, MAX_POINTS, MAX_WINDOW, metric_series
from telemetry.models.metrics import NUMERIC_METRICS, Resolution


class MetricsQuerySerializer(StrictSerializer):
    resolution = serializers.ChoiceField(choices=Resolution.values, default=Resolution.RAW)
    metric = serializers.ListField(
        child=serializers.ChoiceField(choices=NUMERIC_METRICS),
        required=False,
        max_length=len(NUMERIC_METRICS),
        help_text="Repeat or comma-separate; default: every metric.",
    )
    after = serializers.DateTimeField(required=False, help_text="Inclusive; default: before minus a window.")
    before = serializers.DateTimeField(required=False, help_text="Exclusive; default: now.")

    def to_internal_value(self, data):
        if hasattr(data, "getlist"):  # ?metric=a,b and ?metric=a&metric=b both work
            data = data.copy()
            data.setlist("metric", [m for value in data.getlist("metric") for m in value.split(",") if m])
        return super().to_internal_value(data)

    def validate(self, attrs):
        resolution = attrs["resolution"]
        before = attrs.get("before") or timezone.now()
        after = attrs.get("after") or before - DEFAULT_WINDOW[resolution]
        if after >= before:
            raise serializers.ValidationError({"after": ["Must be earlier than before."]})
        if before - after > MAX_WINDOW[resolution]:
            raise serializers.ValidationError(
                {
                    "after": [
                        f"At most {MAX_WINDOW[resolution]} at resolution {resolution}; use a coarser one."
                    ]
                }
            )
        attrs.update(
            after=after, before=before, metric=list(dict.fromkeys(attrs.get("metric") or NUMERIC_METRICS))
        )
        return attrs


class PointSerializer(serializers.Serializer):
    ts = serializers.DateTimeField()


class MetricSeriesSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    resolution = serializers.ChoiceField(choices=Resolution.values)
    metrics = serializers.ListField(child=serializers.CharField())
    after = serializers.DateTimeField()
    before = serializers.DateTimeField()
    truncated = serializers.BooleanField(help_text=f"True when more than {MAX_POINTS} points matched.")
    points = serializers.ListField(
        child=serializers.DictField(),
        help_text='raw: {"ts", "<metric>"}; 1m/1h: {"ts", "samples", "<metric>_avg", "<metric>_max"}',
    )


class DeviceMetricsView(APIView):
    """A device's health metrics over a window: raw samples or 1-minute / 1-hour average and maximum."""

    @extend_schema(
        parameters=[
            OpenApiParameter("resolution", str, enum=Resolution.values),
            OpenApiParameter("metric", str, many=True, enum=NUMERIC_METRICS),
            OpenApiParameter("after", str, description="ISO 8601"),
            OpenApiParameter("before", str, description="ISO 8601"),
        ],
        responses=MetricSeriesSerializer,
    )
    def get(self, request, device_id: str):
        device = get_object_or_404(Device, device_id=device_id)
        query = MetricsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        points, truncated = metric_series(
            device=device,
            resolution=q["resolution"],
            metrics=q["metric"],
            after=q["after"],
            before=q["before"],
        )
        body = {
            "device_id": device.device_id,
            "resolution": q["resolution"],
            "metrics": q["metric"],
            "after": q["after"],
            "before": q["before"],
            "truncated": truncated,
            "points": points,
        }
        return Response(MetricSeriesSerializer(body).data)
