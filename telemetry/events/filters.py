"""FilterSets for events and alerts, shared by the API and the UI."""

import django_filters

from devices.models import DeviceGroup, Site
from fleet.filters import IdMultipleChoiceFilter, UtcDateTimeFilter
from telemetry.models.events import Alert, AlertRule, Event


class EventFilterSet(django_filters.FilterSet):
    site = IdMultipleChoiceFilter(
        field_name="device__site", queryset=Site.objects.all(), label="Site", help_text="Site ids (any of)."
    )
    group = IdMultipleChoiceFilter(
        field_name="device__groups",
        queryset=DeviceGroup.objects.all(),
        label="Group",
        help_text="Group ids (any of).",
    )
    device = django_filters.BaseInFilter(
        field_name="device__device_id", label="Camera (device id)", help_text="Device ids, comma separated."
    )
    label = django_filters.BaseInFilter(
        field_name="label", label="Label", help_text="Labels, comma separated."
    )
    camera = django_filters.CharFilter()
    zone = django_filters.CharFilter()
    min_score = django_filters.NumberFilter(field_name="score", lookup_expr="gte", label="Minimum score")
    after = UtcDateTimeFilter(
        field_name="start", lookup_expr="gte", label="From (UTC)", help_text="Started at or after."
    )
    before = UtcDateTimeFilter(
        field_name="start", lookup_expr="lt", label="Jump to (UTC)", help_text="Started before."
    )
    reviewed = django_filters.BooleanFilter(
        field_name="reviewed_at",
        lookup_expr="isnull",
        exclude=True,
        label="Reviewed",
        help_text="Marked reviewed (or not).",
    )

    class Meta:
        model = Event
        fields = []


class AlertFilterSet(django_filters.FilterSet):
    rule = IdMultipleChoiceFilter(queryset=AlertRule.objects.all(), label="Rule")
    device = django_filters.BaseInFilter(field_name="device__device_id", label="Camera (device id)")
    site = IdMultipleChoiceFilter(field_name="device__site", queryset=Site.objects.all(), label="Site")
    acknowledged = django_filters.BooleanFilter(
        field_name="acknowledged_at", lookup_expr="isnull", exclude=True, label="Acknowledged"
    )
    after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte", label="From (UTC)")
    before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt", label="Until (UTC)")

    class Meta:
        model = Alert
        fields = ["webhook_state"]


class AlertRuleFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = AlertRule
        fields = ["enabled"]
