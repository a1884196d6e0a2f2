"""Liveness, readiness and the Prometheus scrape endpoint."""

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Each configured dependency reported by name; 503 when any is down."""
    checks = {}
    for name, path in settings.READINESS_CHECKS.items():
        try:
            import_string(path)()
            checks[name] = {"status": "ok"}
        except Exception as exc:  # a readiness probe reports every failure, whatever its type
            checks[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    ready = all(c["status"] == "ok" for c in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "error", "checks": checks}, status=200 if ready else 503
    )


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
