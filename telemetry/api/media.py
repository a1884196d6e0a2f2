"""Uploaded media: state of every grant, and a short-lived download URL once verified."""

from rest_framework import serializers, viewsets

from telemetry.media.services import media_url
from telemetry.models.media import Media


class MediaSerializer(serializers.ModelSerializer):
    device = serializers.SlugRelatedField(slug_field="device_id", read_only=True)
    event_id = serializers.CharField(source="event.event_id", read_only=True, default=None)
    url = serializers.SerializerMethodField(help_text="Short-lived GET URL (5 minutes), verified media only.")

    class Meta:
        model = Media
        fields = [
            "id",
            "device",
            "event",
            "event_id",
            "request_id",
            "kind",
            "content_type",
            "size",
            "sha256",
            "state",
            "error",
            "detail",
            "created_at",
            "verified_at",
            "url",
        ]
        read_only_fields = fields

    def get_url(self, obj) -> str | None:
        return media_url(obj)


class MediaViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Media.objects.select_related("device", "event")
    serializer_class = MediaSerializer
    filterset_fields = {
        "state": ["exact"],
        "kind": ["exact"],
        "device__device_id": ["exact"],
        "event": ["exact"],
    }
