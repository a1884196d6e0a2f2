from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from fleet import health, views
from fleet.api.audit import AuditEntryViewSet

audit_router = DefaultRouter(trailing_slash=True)
audit_router.register("audit", AuditEntryViewSet)

api_v1 = [
    path("", include("devices.api.urls")),
    path("", include("accounts.api.urls")),
    path("", include("ota.api.urls")),
    path("", include(audit_router.urls)),
    path("", include("telemetry.api.urls")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("files/", include("fleet.storage.urls")),
]

handler404 = "fleet.api.errors.json_404"
handler500 = "fleet.api.errors.json_500"
