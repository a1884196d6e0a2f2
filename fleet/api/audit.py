"""The audit log, read-only through the API."""

import django_filters
from rest_framework import serializers, viewsets

from fleet.api.viewsets import PK_REGEX
from fleet.filters import UtcDateTimeFilter
from fleet.models import AuditEntry, AuditSource


class AuditFilterSet(django_filters.FilterSet):
    action = django_filters.CharFilter()
    action_prefix = django_filters.CharFilter(
        field_name="action", lookup_expr="startswith", label="Action starts with"
    )
    object_type = django_filters.CharFilter()
    object_id = django_filters.CharFilter()
    actor = django_filters.CharFilter(field_name="actor_label", label="Who")
    source = django_filters.ChoiceFilter(choices=AuditSource.choices)
    after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte", label="From (UTC)")
    before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt", label="Until (UTC)")

    class Meta:
        model = AuditEntry
        fields = []


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label", read_only=True)

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "actor",
            "source",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "before",
            "after",
        ]
        read_only_fields = fields


class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet):
    """The append-only audit log: every state change, by whom, from where, before and after."""

    queryset = AuditEntry.objects.all()
    lookup_value_regex = PK_REGEX
    serializer_class = AuditEntrySerializer
    filterset_class = AuditFilterSet
