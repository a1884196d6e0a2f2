from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from accounts import views as account_views
from fleet import health, views
from fleet.api.audit import AuditEntryViewSet
from telemetry.views.dashboard import home

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
    path("", home, name="home"),
    path("login/", account_views.SignInView.as_view(), name="login"),
    path("logout/", account_views.SignOutView.as_view(), name="logout"),
    path("account/", include("accounts.urls")),
    path("audit/", views.audit_view(), name="audit"),
    path("", include("devices.urls")),
    path("", include("telemetry.urls")),
    path("updates/", include("ota.urls")),
    path("admin/", admin.site.urls),
    # Browsers ask for it on pages without an icon link (the Django admin's): no 404 in the console.
    path("favicon.ico", RedirectView.as_view(url=static("fleet/favicon.svg"), permanent=True)),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: the CSP allows no inline script.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api_docs.html"),
        name="swagger-ui",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("files/", include("fleet.storage.urls")),
]

handler403 = "fleet.views.error_403"
handler404 = "fleet.views.error_404"
handler500 = "fleet.views.error_500"
