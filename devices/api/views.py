from django.db.models import Count
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from devices import selectors, services
from devices.api import serializers as s
from devices.filters import (
    DeviceFilterSet,
    DeviceGroupFilterSet,
    HardwareModelFilterSet,
    SiteFilterSet,
    TagFilterSet,
)
from devices.models import DeviceGroup, HardwareModel, SavedFilter, Tag
from fleet.api.viewsets import ServiceModelViewSet
from protocol.topics import DEVICE_ID_PATTERN


class SiteViewSet(ServiceModelViewSet):
    queryset = selectors.site_list()
    serializer_class = s.SiteSerializer
    filterset_class = SiteFilterSet
    services = (services.site_create, services.site_update, services.site_delete)


class HardwareModelViewSet(ServiceModelViewSet):
    queryset = HardwareModel.objects.all()
    serializer_class = s.HardwareModelSerializer
    filterset_class = HardwareModelFilterSet
    services = (
        services.hardware_model_create,
        services.hardware_model_update,
        services.hardware_model_delete,
    )


class DeviceGroupViewSet(ServiceModelViewSet):
    queryset = DeviceGroup.objects.all()
    serializer_class = s.DeviceGroupSerializer
    filterset_class = DeviceGroupFilterSet
    services = (services.group_create, services.group_update, services.group_delete)


class TagViewSet(ServiceModelViewSet):
    queryset = Tag.objects.annotate(device_count=Count("devices"))
    serializer_class = s.TagSerializer
    filterset_class = TagFilterSet
    services = (services.tag_create, services.tag_update, services.tag_delete)


class DeviceViewSet(ServiceModelViewSet):
    queryset = selectors.device_queryset()
    serializer_class = s.DeviceSerializer
    filterset_class = DeviceFilterSet
    lookup_field = "device_id"
    lookup_value_regex = DEVICE_ID_PATTERN.strip("^$")
    services = (services.device_create, services.device_update, services.device_delete)

    def _bulk(self, request, serializer_class, service, fields: tuple[str, ...]):
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        count = service(actor=self.actor(), device_ids=data["device_ids"], **{k: data[k] for k in fields})
        return Response({"updated": count})

    @extend_schema(request=s.BulkTagSerializer, responses=s.BulkResultSerializer)
    @action(detail=False, methods=["post"], url_path="bulk/tag")
    def bulk_tag(self, request):
        """Add and remove tags on many devices at once."""
        return self._bulk(request, s.BulkTagSerializer, services.devices_bulk_tag, ("add", "remove"))

    @extend_schema(request=s.BulkGroupSerializer, responses=s.BulkResultSerializer)
    @action(detail=False, methods=["post"], url_path="bulk/group")
    def bulk_group(self, request):
        """Add devices to groups and remove them from groups."""
        return self._bulk(request, s.BulkGroupSerializer, services.devices_bulk_group, ("add", "remove"))

    @extend_schema(request=s.BulkMoveSerializer, responses=s.BulkResultSerializer)
    @action(detail=False, methods=["post"], url_path="bulk/move")
    def bulk_move(self, request):
        """Move many devices to one site (or to none)."""
        return self._bulk(request, s.BulkMoveSerializer, services.devices_bulk_move, ("site",))

    @extend_schema(request=s.TransitionSerializer, responses=s.DeviceSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request, device_id=None):
        """Move the device along its lifecycle: activate, quarantine, decommission."""
        serializer = s.TransitionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = services.device_transition(
            actor=self.actor(), device=self.get_object(), **serializer.validated_data
        )
        return Response(s.DeviceSerializer(selectors.device_queryset().get(pk=device.pk)).data)


class SavedFilterViewSet(ServiceModelViewSet):
    queryset = SavedFilter.objects.all()
    serializer_class = s.SavedFilterSerializer
    services = (services.saved_filter_create, services.saved_filter_update, services.saved_filter_delete)

    @extend_schema(responses=s.DeviceSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"])
    def devices(self, request, pk=None):
        """The devices this saved filter matches now."""
        queryset = selectors.saved_filter_devices(saved_filter=self.get_object())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.DeviceSerializer(page, many=True).data)
