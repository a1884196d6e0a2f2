"""Telemetry's part of /api/v1/: a plain router (viewsets from telemetry.api.routes) plus device sub-resources."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from telemetry.api import routes
from telemetry.api.metrics import DeviceMetricsView
from telemetry.api.status import DeadLetterViewSet, DeviceStatusView, FleetStatusView

router = SimpleRouter(trailing_slash=True)
router.register("dead-letters", DeadLetterViewSet)
routes.register(router)

urlpatterns = [
    path("fleet/status/", FleetStatusView.as_view(), name="fleet-status"),
    path("devices/<str:device_id>/status/", DeviceStatusView.as_view(), name="device-status"),
    path("devices/<str:device_id>/metrics/", DeviceMetricsView.as_view(), name="device-metrics"),
    *router.urls,
]
