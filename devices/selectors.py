"""Reads of the registry that need more than a one-line queryset."""

from django.db.models import Count, Prefetch, QuerySet

from devices.filters import DeviceFilterSet, criteria_querydict
from devices.models import Device, DeviceGroup, SavedFilter, Site, Tag
from fleet.errors import FleetError

# Where device_queryset() leaves each device's groups and tags (lists, not managers).
PREFETCHED_GROUPS = "prefetched_groups"
PREFETCHED_TAGS = "prefetched_tags"


def device_queryset() -> QuerySet[Device]:
    """Devices with everything a list row shows, in a constant number of queries.

    A row shows site and hardware model as ids (no join needed). Groups and tags are prefetched
    into plain lists (`to_attr`): Django then skips building a related queryset per row, which
    was most of a list request's CPU (bench/README.md, "API")."""
    return Device.objects.prefetch_related(
        Prefetch("groups", queryset=DeviceGroup.objects.only("id"), to_attr=PREFETCHED_GROUPS),
        Prefetch("tags", queryset=Tag.objects.only("id", "name"), to_attr=PREFETCHED_TAGS),
    )


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


def device_rows() -> QuerySet[Device]:
    """Devices as the cameras table shows them: site, hardware and availability joined, groups and tags
    prefetched with their names; a page costs the same three queries at any fleet size."""
    return Device.objects.select_related("site", "hardware_model", "status").prefetch_related(
        Prefetch("groups", queryset=DeviceGroup.objects.only("id", "name"), to_attr=PREFETCHED_GROUPS),
        Prefetch("tags", queryset=Tag.objects.only("id", "name"), to_attr=PREFETCHED_TAGS),
    )


def device_ids_matching(*, filters: dict, limit: int) -> list[str]:
    """Device ids a filter matches (for a bulk action on "all matching"), at most `limit`."""
    return list(device_list(filters=filters).order_by("id").values_list("device_id", flat=True)[:limit])


def saved_filter_list() -> QuerySet[SavedFilter]:
    return SavedFilter.objects.order_by("name")
