"""FilterSets of telemetry's plain lists (dead letters, bandwidth policies), for the API and the UI.

Events and alerts have theirs in telemetry/events/filters.py.
"""

import django_filters

from fleet.filters import UtcDateTimeFilter
from telemetry.models import BandwidthPolicy, DeadLetter
from telemetry.models.ingest import DeadLetterReason


class DeadLetterFilterSet(django_filters.FilterSet):
    reason = django_filters.ChoiceFilter(choices=DeadLetterReason.choices, empty_label="Any")
    after = UtcDateTimeFilter(field_name="received_at", lookup_expr="gte", label="From (UTC)")
    before = UtcDateTimeFilter(field_name="received_at", lookup_expr="lt", label="Until (UTC)")

    class Meta:
        model = DeadLetter
        fields = ["reason", "device_id", "kind"]


class BandwidthPolicyFilterSet(django_filters.FilterSet):
    class Meta:
        model = BandwidthPolicy
        fields = ["group", "metered"]
