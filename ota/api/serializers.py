from rest_framework import serializers

from devices.models import HardwareModel
from fleet.api.serializers import StrictModelSerializer, StrictSerializer
from ota.models import Deployment, DeviceUpdate, KeyListDocument, ModelArtifact, Release, SigningKey
from ota.services.deployments import STRATEGY_FIELDS


class HardwareNamesField(serializers.ListField):
    """Hardware models by name; reads the prefetch cache."""

    child = serializers.CharField(max_length=100)

    def to_representation(self, data):
        return sorted(hw.name for hw in data.all())


class ModelArtifactSerializer(StrictModelSerializer):
    hardware_models = HardwareNamesField(required=False, max_length=256)

    class Meta:
        model = ModelArtifact
        fields = [
            "id",
            "name",
            "version",
            "sha256",
            "size",
            "input_shape",
            "labels",
            "hardware_models",
            "notes",
            "created_at",
        ]
        read_only_fields = ["sha256", "size", "input_shape"]


class ArtifactUploadSerializer(StrictSerializer):
    """multipart/form-data: the ONNX file and what it is."""

    file = serializers.FileField()
    name = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=64)
    hardware_models = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list
    )
    labels = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)
    notes = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)

    def validate_hardware_models(self, names):
        found = {hw.name: hw for hw in HardwareModel.objects.filter(name__in=names)}
        unknown = sorted(set(names) - set(found))
        if unknown:
            raise serializers.ValidationError(f"Unknown hardware model(s): {', '.join(unknown)}.")
        return [found[n] for n in dict.fromkeys(names)]


class ReleaseArtifactSerializer(serializers.Serializer):
    hardware_model = serializers.CharField(source="hardware_model.name", read_only=True)
    artifact = serializers.IntegerField(source="artifact_id", read_only=True)
    sha256 = serializers.CharField(source="artifact.sha256", read_only=True)
    manifest = serializers.JSONField(read_only=True)


class ReleaseSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="track.name", read_only=True)
    artifacts = ReleaseArtifactSerializer(
        many=True, read_only=True, help_text="Per-hardware builds, each with its own signed manifest."
    )
    hardware_models = HardwareNamesField(read_only=True)
    signed_by = serializers.CharField(source="signed_by.keyid", read_only=True)

    class Meta:
        model = Release
        fields = [
            "id",
            "model",
            "version",
            "serial",
            "artifact",
            "hardware_models",
            "artifacts",
            "min_agent_version",
            "expires_at",
            "signed_by",
            "rollback_of",
            "notes",
            "manifest",
            "created_at",
        ]
        read_only_fields = fields


class ReleaseCreateSerializer(StrictSerializer):
    artifact = serializers.PrimaryKeyRelatedField(queryset=ModelArtifact.objects.all())
    artifacts = serializers.DictField(
        child=serializers.PrimaryKeyRelatedField(queryset=ModelArtifact.objects.all()),
        required=False,
        help_text='A build of its own for some hardware models: {"cam-arm": <artifact id>}; '
        "`artifact` serves the others.",
    )
    hardware_models = serializers.ListField(
        child=serializers.CharField(max_length=100), min_length=1, max_length=256
    )
    min_agent_version = serializers.RegexField(r"^\d+(\.\d+)*$", max_length=64, required=False, default="1.0")
    version = serializers.CharField(max_length=64, required=False, default="")
    expires_days = serializers.IntegerField(
        min_value=1, max_value=3650, required=False, allow_null=True, default=None
    )
    notes = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)


class DeploymentSerializer(StrictModelSerializer):
    release = serializers.PrimaryKeyRelatedField(queryset=Release.objects.all())
    targets = serializers.DictField(
        help_text='Any of {"devices": [device_id], "groups": [id], "tags": [name], "sites": [id], '
        '"hardware_models": [id], "saved_filters": [id]}; a device matching any is targeted.'
    )
    waves = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=100), required=False)
    canary_devices = serializers.ListField(
        child=serializers.CharField(max_length=63), required=False, max_length=500
    )
    gates = serializers.DictField(
        required=False,
        help_text="Quality gates: thresholds a wave's cameras must meet against a control cohort on the "
        'old model before the next wave, e.g. {"min_devices": 3, "latency_p95_regression": 0.2, '
        '"fps_drop": 0.2, "detection_rate_change": 0.5, "crash_rate_max": 1, "on_fail": "pause"}.',
    )
    gate_results = serializers.ListField(
        child=serializers.DictField(),
        read_only=True,
        help_text="Per wave whose gate was evaluated: state (waiting, passed, failed, overridden), the "
        "cohorts per hardware model with their numbers and checks, and a machine-readable reason.",
    )
    deployment_id = serializers.CharField(read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "deployment_id",
            "name",
            "release",
            "state",
            "state_reason",
            "targets",
            "excluded",
            *STRATEGY_FIELDS,
            "plan",
            "current_wave",
            "gate_results",
            "rollback_of",
            "started_at",
            "finished_at",
            "created_at",
        ]
        read_only_fields = [
            "state",
            "state_reason",
            "excluded",
            "plan",
            "current_wave",
            "rollback_of",
            "started_at",
            "finished_at",
        ]


class AbortSerializer(StrictSerializer):
    rollback = serializers.BooleanField(required=False, default=False)
    reason = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)


class PauseSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)


class DeviceUpdateSerializer(serializers.ModelSerializer):
    device = serializers.CharField(source="device.device_id", read_only=True)

    class Meta:
        model = DeviceUpdate
        fields = [
            "id",
            "device",
            "wave",
            "state",
            "reason",
            "progress",
            "notified_at",
            "delivered_at",
            "finished_at",
            "updated_at",
        ]
        read_only_fields = fields


class SigningKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = SigningKey
        fields = ["id", "keyid", "role", "public_key", "created_at", "revoked_at"]
        read_only_fields = fields


class KeyListSerializer(serializers.ModelSerializer):
    class Meta:
        model = KeyListDocument
        fields = ["id", "version", "expires_at", "document", "created_at"]
        read_only_fields = fields


class KeyListPublishSerializer(StrictSerializer):
    document = serializers.DictField(
        help_text='A root-signed key list: {"signed": {...}, "signatures": [...]}.'
    )


class ProgressSerializer(serializers.Serializer):
    state = serializers.CharField()
    total = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    finished = serializers.IntegerField()
    failed = serializers.IntegerField()
    failure_rate = serializers.FloatField()
    current_wave = serializers.IntegerField()
    wave_count = serializers.IntegerField()
    eta_s = serializers.FloatField(allow_null=True)
    waves = serializers.ListField(child=serializers.DictField())
