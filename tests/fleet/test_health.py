import json
import logging

import pytest
from django.test import Client, override_settings

from fleet.logging import formatter


def test_healthz_is_alive_without_database():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_check_by_name():
    response = Client().get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert set(checks) == {"database", "celery", "storage", "broker"}
    assert checks["database"]["status"] == "ok" and checks["database"]["latency_ms"] >= 0


@pytest.mark.django_db
def test_readyz_says_celery_runs_eager_rather_than_failing():
    """The embedded default (make demo) has no worker to ping: tasks run in the process."""
    celery = Client().get("/readyz").json()["checks"]["celery"]
    assert (celery["status"], celery["detail"]) == ("ok", "eager: tasks run in-process, no worker")


@pytest.mark.django_db
def test_readyz_is_503_when_no_celery_worker_answers(settings):
    # Not eager, and nobody consumes the broker (the test's in-memory transport): the ping times out.
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.READINESS_CELERY_TIMEOUT_S = 0.2
    response = Client().get("/readyz")
    assert response.status_code == 503
    celery = response.json()["checks"]["celery"]
    assert celery["status"] == "error"
    assert celery["error"] == "RuntimeError: no Celery worker answered a ping within 0.2 s"
    assert celery["latency_ms"] >= 200


def _failing_check():
    raise ConnectionError("broker unreachable")


@pytest.mark.django_db
def test_readyz_is_503_when_a_dependency_is_down(settings):
    settings.READINESS_CHECKS = {
        **settings.READINESS_CHECKS,
        "broker": "tests.fleet.test_health._failing_check",
    }
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["broker"]["status"] == "error"
    assert body["checks"]["broker"]["error"] == "ConnectionError: broker unreachable"


@pytest.mark.django_db
def test_metrics_count_requests_by_route():
    client = Client()
    client.get("/healthz")
    text = client.get("/metrics").content.decode()
    assert 'fleet_http_requests_total{method="GET",route="healthz",status="200"}' in text
    assert "fleet_http_request_seconds_bucket" in text


def test_json_log_lines_when_log_format_is_json():
    with override_settings(LOG_FORMAT="json"):
        fmt = formatter()
    record = logging.LogRecord(
        "fleet.test", logging.WARNING, __file__, 1, "device %s offline", ("cam-1",), None
    )
    line = json.loads(fmt.format(record))
    assert line["event"] == "device cam-1 offline" and line["level"] == "warning" and "timestamp" in line
