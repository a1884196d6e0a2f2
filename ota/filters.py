"""One FilterSet per listable OTA model, for the API and the UI alike."""

import django_filters

from ota.models import (
    Deployment,
    DeploymentState,
    DeviceUpdate,
    KeyRole,
    ModelArtifact,
    OtaState,
    Release,
    SigningKey,
)


class ModelArtifactFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    hardware_model = django_filters.CharFilter(field_name="hardware_models__name", label="Hardware")

    class Meta:
        model = ModelArtifact
        fields = ["name", "version", "sha256"]


class ReleaseFilterSet(django_filters.FilterSet):
    model = django_filters.CharFilter(field_name="track__name", label="Model")
    hardware_model = django_filters.CharFilter(field_name="hardware_models__name", label="Hardware")

    class Meta:
        model = Release
        fields = ["artifact", "serial", "version"]


class DeploymentFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=DeploymentState.choices)
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = Deployment
        fields = ["release"]


class DeviceUpdateFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=OtaState.choices)
    device = django_filters.CharFilter(field_name="device__device_id", label="Camera (device id)")

    class Meta:
        model = DeviceUpdate
        fields = ["wave"]


class SigningKeyFilterSet(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=KeyRole.choices)
    revoked = django_filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = SigningKey
        fields = []
