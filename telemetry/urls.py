from django.urls import path

from telemetry.views import camera, dashboard, events, settings

app_name = "telemetry"

urlpatterns = [
    path("dashboard/<slug:part>/", dashboard.DashboardPart.as_view(), name="dashboard-part"),
    path("cameras/<str:device_id>/", camera.CameraPage.as_view(), name="camera"),
    path("cameras/<str:device_id>/metrics.json", camera.CameraMetrics.as_view(), name="camera-metrics"),
    path("cameras/<str:device_id>/events/", camera.CameraEvents.as_view(), name="camera-events"),
    path("cameras/<str:device_id>/status/", camera.CameraStatus.as_view(), name="camera-status"),
    path("cameras/<str:device_id>/commands/", camera.CameraCommands.as_view(), name="camera-commands"),
    path("cameras/<str:device_id>/action/", camera.CameraAction.as_view(), name="camera-action"),
    path("events/", events.EventReview.as_view(), name="events"),
    path("events/review/", events.EventReviewMark.as_view(), name="events-review"),
    path("events/<int:pk>/", events.EventPage.as_view(), name="event"),
    path("alerts/", events.AlertInbox.as_view(), name="alerts"),
    path("alerts/acknowledge/", events.AlertAcknowledge.as_view(), name="alerts-ack"),
    path("alert-rules/", settings.AlertRuleList.as_view(), name="alert-rules"),
    path("alert-rules/new/", settings.AlertRuleEdit.as_view(), name="alert-rule-create"),
    path("alert-rules/<int:pk>/", settings.AlertRuleEdit.as_view(), name="alert-rule"),
    path("bandwidth-policies/", settings.PolicyList.as_view(), name="policies"),
    path("bandwidth-policies/new/", settings.PolicyEdit.as_view(), name="policy-create"),
    path("bandwidth-policies/<int:pk>/", settings.PolicyEdit.as_view(), name="policy"),
    path("dead-letters/", settings.DeadLetterList.as_view(), name="dead-letters"),
]
