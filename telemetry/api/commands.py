"""Commands: operators send them; everyone may follow their state."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from devices.models import Device
from fleet.api.serializers import StrictSerializer
from fleet.audit import Actor
from protocol.vocab import COMMAND_NAMES
from telemetry.commands.services import DEFAULT_TTL_S, MAX_TTL_S, command_send
from telemetry.models.commands import Command


class CommandSerializer(serializers.ModelSerializer):
    device = serializers.SlugRelatedField(slug_field="device_id", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Command
        fields = [
            "id",
            "command_id",
            "device",
            "name",
            "args",
            "state",
            "detail",
            "result",
            "expires_at",
            "created_by",
            "created_at",
            "acknowledged_at",
            "finished_at",
        ]
        read_only_fields = fields


class CommandSendSerializer(StrictSerializer):
    device = serializers.SlugRelatedField(slug_field="device_id", queryset=Device.objects.all())
    name = serializers.ChoiceField(choices=COMMAND_NAMES)
    args = serializers.DictField(required=False, default=dict)
    ttl_s = serializers.IntegerField(min_value=1, max_value=MAX_TTL_S, default=DEFAULT_TTL_S)


class CommandViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """reboot, snapshot, set_log_level, request_logs, upload_clip: sent on down/cmd, followed through up/ack.

    upload_clip (args.event_id) asks the camera to upload the clip it kept for one of its events;
    the upload then shows as that event's clip media.
    """

    queryset = Command.objects.select_related("device", "created_by")
    serializer_class = CommandSerializer
    filterset_fields = {"state": ["exact", "in"], "name": ["exact"], "device__device_id": ["exact"]}

    @extend_schema(request=CommandSendSerializer, responses={201: CommandSerializer})
    def create(self, request, *args, **kwargs):
        serializer = CommandSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        command = command_send(actor=Actor.from_request(request), **serializer.validated_data)
        return Response(CommandSerializer(command).data, status=status.HTTP_201_CREATED)
