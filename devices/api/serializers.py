from rest_framework import serializers

from devices.models import Device, DeviceGroup, DeviceState, HardwareModel, SavedFilter, Site, Tag
from devices.selectors import PREFETCHED_GROUPS, PREFETCHED_TAGS
from fleet.api.serializers import StrictModelSerializer, StrictSerializer
from protocol.topics import DEVICE_ID_PATTERN


class SiteSerializer(StrictModelSerializer):
    device_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Site
        fields = [
            "id",
            "name",
            "timezone",
            "address",
            "latitude",
            "longitude",
            "device_count",
            "created_at",
            "updated_at",
        ]


class HardwareModelSerializer(StrictModelSerializer):
    class Meta:
        model = HardwareModel
        fields = ["id", "name", "cpu_arch", "accelerator", "ram_mb", "created_at"]


class DeviceGroupSerializer(StrictModelSerializer):
    class Meta:
        model = DeviceGroup
        fields = ["id", "name", "description", "created_at"]


class TagSerializer(StrictModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name"]


def _prefetched(instance, attr: str, relation: str):
    """The list selectors.device_queryset() prefetched, else the relation (a device just written)."""
    found = getattr(instance, attr, None)
    return found if found is not None else getattr(instance, relation).all()


class TagNamesField(serializers.ListField):
    """Tags as a list of names; reads the prefetched list, so no query per row."""

    child = serializers.CharField(max_length=50)

    def get_attribute(self, instance):
        return _prefetched(instance, PREFETCHED_TAGS, "tags")

    def to_representation(self, data):
        return sorted(tag.name for tag in data)


class GroupIdsField(serializers.ManyRelatedField):
    """Group ids; reads the prefetched list, so no query per row."""

    def __init__(self, **kwargs):
        super().__init__(
            child_relation=serializers.PrimaryKeyRelatedField(queryset=DeviceGroup.objects.all()), **kwargs
        )

    def get_attribute(self, instance):
        if instance.pk is None:
            return []
        return _prefetched(instance, PREFETCHED_GROUPS, "groups")


class DeviceSerializer(StrictModelSerializer):
    tags = TagNamesField(required=False, max_length=100, help_text="Tag names; unknown tags are created.")
    groups = GroupIdsField(required=False)
    device_id = serializers.RegexField(
        DEVICE_ID_PATTERN, required=False, help_text="Assigned by the server when omitted."
    )

    class Meta:
        model = Device
        fields = [
            "id",
            "device_id",
            "name",
            "serial",
            "site",
            "hardware_model",
            "groups",
            "tags",
            "state",
            "last_seen_at",
            "agent_version",
            "model_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_seen_at", "agent_version", "model_version"]


class SavedFilterSerializer(StrictModelSerializer):
    criteria = serializers.DictField(
        help_text='Device filter parameters, e.g. {"site": [1], "tag": ["lobby"], "hardware_model": [2]}.'
    )

    class Meta:
        model = SavedFilter
        fields = ["id", "name", "description", "criteria", "created_at", "updated_at"]


class DeviceIdsSerializer(StrictSerializer):
    device_ids = serializers.ListField(
        child=serializers.RegexField(DEVICE_ID_PATTERN), min_length=1, max_length=10_000
    )


class BulkTagSerializer(DeviceIdsSerializer):
    add = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list)
    remove = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list)


class BulkGroupSerializer(DeviceIdsSerializer):
    add = serializers.PrimaryKeyRelatedField(
        many=True, queryset=DeviceGroup.objects.all(), required=False, default=list
    )
    remove = serializers.PrimaryKeyRelatedField(
        many=True, queryset=DeviceGroup.objects.all(), required=False, default=list
    )


class BulkMoveSerializer(DeviceIdsSerializer):
    site = serializers.PrimaryKeyRelatedField(queryset=Site.objects.all(), allow_null=True)


class BulkResultSerializer(serializers.Serializer):
    updated = serializers.IntegerField()


class TransitionSerializer(StrictSerializer):
    state = serializers.ChoiceField(choices=DeviceState.choices)
    reason = serializers.CharField(max_length=300, required=False, default="")
