"""Liveness, readiness and the Prometheus scrape endpoint."""

import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_celery() -> str:
    """At least one Celery worker answers a ping within READINESS_CELERY_TIMEOUT_S.

    With CELERY_TASK_ALWAYS_EAGER (the embedded default, `make demo`) tasks run in the process that
    sends them and there is no worker to ask: that is reported as it is, not as a failure.
    """
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "eager: tasks run in-process, no worker"
    from fleet.celery import app

    timeout = settings.READINESS_CELERY_TIMEOUT_S
    # limit=1: answer as soon as one worker replies instead of waiting out the timeout.
    replies = app.control.ping(timeout=timeout, limit=1)
    if not replies:
        raise RuntimeError(f"no Celery worker answered a ping within {timeout:g} s")
    return f"worker {next(iter(replies[0]))} answered"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Each configured dependency reported by name, with its latency; 503 when any is down.

    A check is a callable that raises when its dependency is down; what it returns, if anything,
    is shown as the check's `detail` (e.g. which Celery worker answered).
    """
    checks = {}
    for name, path in settings.READINESS_CHECKS.items():
        start = time.perf_counter()
        try:
            detail = import_string(path)()
            checks[name] = {"status": "ok"}
            if detail:
                checks[name]["detail"] = str(detail)
        except Exception as exc:  # a readiness probe reports every failure, whatever its type
            checks[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        checks[name]["latency_ms"] = round((time.perf_counter() - start) * 1000, 1)
    ready = all(c["status"] == "ok" for c in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "error", "checks": checks}, status=200 if ready else 503
    )


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
