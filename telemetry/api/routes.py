"""Router registrations of events, alerts, media, bandwidth policies and commands.

telemetry/api/urls.py calls register(router) once; keeping the list here lets each
part of the app add endpoints without editing the other's module.
"""

from rest_framework.routers import BaseRouter

from telemetry.api.commands import CommandViewSet
from telemetry.api.events import AlertRuleViewSet, AlertViewSet, EventViewSet
from telemetry.api.media import MediaViewSet
from telemetry.api.policies import BandwidthPolicyViewSet, DataUsageViewSet, DeviceConfigViewSet


def register(router: BaseRouter) -> None:
    router.register("events", EventViewSet)
    router.register("alerts", AlertViewSet)
    router.register("alert-rules", AlertRuleViewSet)
    router.register("media", MediaViewSet)
    router.register("bandwidth-policies", BandwidthPolicyViewSet)
    router.register("device-configs", DeviceConfigViewSet)
    router.register("data-usage", DataUsageViewSet)
    router.register("commands", CommandViewSet)
