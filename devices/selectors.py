"""Reads of the registry that need more than a one-line queryset."""

from django.db.models import Count, QuerySet

from devices.filters import DeviceFilterSet, criteria_querydict
from devices.models import Device, SavedFilter, Site
from fleet.errors import FleetError


def device_queryset() -> QuerySet[Device]:
    """Devices with everything a list row shows, in a constant number of queries."""
    return Device.objects.select_related("site", "hardware_model").prefetch_related("groups", "tags")


def device_list(*, filters: dict | None = None) -> QuerySet[Device]:
    queryset = device_queryset()
    if not filters:
        return queryset
    filterset = DeviceFilterSet(criteria_querydict(filters), queryset=queryset)
    if not filterset.is_valid():
        raise FleetError("invalid_filter", "Invalid device filter.", fields=filterset.errors)
    return filterset.qs


def saved_filter_devices(*, saved_filter: SavedFilter) -> QuerySet[Device]:
    """The device set a saved filter resolves to now (it is dynamic: re-evaluated on every call)."""
    return device_list(filters=saved_filter.criteria)


def site_list() -> QuerySet[Site]:
    return Site.objects.annotate(device_count=Count("devices"))
