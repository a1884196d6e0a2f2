"""One FilterSet per listable model, used by the API, the UI and saved filters alike."""

import django_filters
from django.db.models import Q
from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from devices.models import Device, DeviceGroup, DeviceState, HardwareModel, Site, Tag
from fleet.filters import IdMultipleChoiceFilter, UtcDateTimeFilter


@extend_schema_field(OpenApiTypes.STR)
class TagNameFilter(django_filters.ModelMultipleChoiceFilter):
    """Tags are addressed by name (the ids mean nothing to an operator)."""


CONNECTIVITY_CHOICES = [("online", "online"), ("offline", "offline"), ("never_seen", "never seen")]


class DeviceFilterSet(django_filters.FilterSet):
    # distinct=False where a join cannot repeat a device (one site, one hardware model, unique tag
    # pairs): DISTINCT would make PostgreSQL sort every match before the page LIMIT (bench/README.md).
    site = IdMultipleChoiceFilter(queryset=Site.objects.all(), distinct=False, help_text="Site ids (any of).")
    group = IdMultipleChoiceFilter(
        field_name="groups",
        queryset=DeviceGroup.objects.all(),
        label="Group",
        help_text="Group ids (any of).",
    )
    tag = TagNameFilter(
        field_name="tags__name",
        to_field_name="name",
        queryset=Tag.objects.all(),
        conjoined=True,
        distinct=False,
        label="Tag",
        help_text="Tag names (all of).",
    )
    hardware_model = IdMultipleChoiceFilter(
        queryset=HardwareModel.objects.all(), distinct=False, help_text="Hardware model ids (any of)."
    )
    state = django_filters.MultipleChoiceFilter(choices=DeviceState.choices)
    device_id = django_filters.BaseInFilter(field_name="device_id", lookup_expr="in")
    agent_version = django_filters.CharFilter()
    model_version = django_filters.CharFilter()
    last_seen_after = UtcDateTimeFilter(field_name="last_seen_at", lookup_expr="gte")
    last_seen_before = UtcDateTimeFilter(field_name="last_seen_at", lookup_expr="lt")
    q = django_filters.CharFilter(method="search", help_text="Search name, device id and serial.")
    connectivity = django_filters.MultipleChoiceFilter(
        choices=CONNECTIVITY_CHOICES,
        method="filter_connectivity",
        label="Online",
        help_text="online, offline or never_seen (any of): as GET /fleet/status/ counts them.",
    )

    class Meta:
        model = Device
        fields = []

    def filter_connectivity(self, queryset, name, values):
        # `status` is telemetry's DeviceStatus (one row per device that ever spoke), reached by its
        # reverse relation so the registry does not import the app that builds on it.
        wanted = set(values)
        if not wanted or wanted == {c for c, _ in CONNECTIVITY_CHOICES}:
            return queryset
        q = Q()
        if "never_seen" in wanted:
            q |= Q(last_seen_at__isnull=True)
        if "online" in wanted:
            q |= Q(last_seen_at__isnull=False, status__online=True)
        if "offline" in wanted:
            q |= Q(last_seen_at__isnull=False) & (Q(status__online=False) | Q(status__isnull=True))
        return queryset.filter(q)

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(name__icontains=value) | Q(device_id__icontains=value) | Q(serial__icontains=value)
        )


def criteria_querydict(criteria: dict) -> QueryDict:
    """Saved-filter criteria ({"site": [1], "tag": ["x"], "q": "lobby"}) as the query string the FilterSet reads."""
    data = QueryDict(mutable=True)
    for key, value in criteria.items():
        values = value if isinstance(value, list) else [value]
        data.setlist(key, [str(v) for v in values])
    return data


class SiteFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = Site
        fields = ["timezone"]


class HardwareModelFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = HardwareModel
        fields = ["cpu_arch", "accelerator"]


class DeviceGroupFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = DeviceGroup
        fields = []


class TagFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = Tag
        fields = []
