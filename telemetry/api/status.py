"""Fleet availability summary, one device's status, and the dead-letter table (read-only)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role
from devices.models import Device
from telemetry.filters import DeadLetterFilterSet
from telemetry.models import DeadLetter
from telemetry.status import selectors


class ConnectivityCountsSerializer(serializers.Serializer):
    online = serializers.IntegerField()
    offline = serializers.IntegerField()
    never_seen = serializers.IntegerField()
    total = serializers.IntegerField()


class AgentVersionCountsSerializer(ConnectivityCountsSerializer):
    agent_version = serializers.CharField()


class ModelVersionCountsSerializer(ConnectivityCountsSerializer):
    model_version = serializers.CharField()


class SiteCountsSerializer(ConnectivityCountsSerializer):
    site = serializers.IntegerField(allow_null=True)
    site_name = serializers.CharField()


class FleetStatusSerializer(ConnectivityCountsSerializer):
    by_agent_version = AgentVersionCountsSerializer(many=True)
    by_model_version = ModelVersionCountsSerializer(many=True)
    by_site = SiteCountsSerializer(many=True)


class DeviceStatusSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    connectivity = serializers.ChoiceField(choices=selectors.CONNECTIVITY)
    online = serializers.BooleanField()
    since = serializers.DateTimeField(allow_null=True, help_text="When online/offline last changed.")
    reason = serializers.CharField(help_text="birth, connection_lost, shutdown, silent, resumed, seen, ...")
    last_status_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    agent_version = serializers.CharField()
    model_version = serializers.CharField()
    hardware_model = serializers.CharField()
    uptime_s = serializers.FloatField(allow_null=True)
    config_revision = serializers.IntegerField(allow_null=True)
    faults = serializers.ListField(
        child=serializers.CharField(),
        help_text="What the device reports wrong while online, e.g. 'camera: ...'.",
    )


class FleetStatusView(APIView):
    """Online / offline / never-seen counts of every non-decommissioned device, overall and by
    agent version, model version and site."""

    @extend_schema(responses=FleetStatusSerializer)
    def get(self, request):
        return Response(FleetStatusSerializer(selectors.fleet_status_summary()).data)


class DeviceStatusView(APIView):
    """One device's availability: from its birth message, last will and the silence sweep."""

    @extend_schema(responses=DeviceStatusSerializer)
    def get(self, request, device_id: str):
        device = get_object_or_404(Device.objects.select_related("status"), device_id=device_id)
        return Response(DeviceStatusSerializer(selectors.device_status(device=device)).data)


class DeadLetterSerializer(serializers.ModelSerializer):
    payload_head = serializers.SerializerMethodField(help_text="The first bytes kept, decoded as UTF-8.")

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "received_at",
            "topic",
            "device_id",
            "kind",
            "message_id",
            "reason",
            "detail",
            "payload_size",
            "payload_head",
        ]

    def get_payload_head(self, obj) -> str:
        return bytes(obj.payload).decode("utf-8", "replace")


class DeadLetterViewSet(viewsets.ReadOnlyModelViewSet):
    """Messages the ingest refused, newest first (filter by reason or device_id)."""

    queryset = DeadLetter.objects.all()
    serializer_class = DeadLetterSerializer
    filterset_class = DeadLetterFilterSet
    read_role = Role.OPERATOR  # payload heads may carry what a device should not have sent
