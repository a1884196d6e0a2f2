"""Metric samples: rollups (correct, idempotent), retention, daily partitions (PostgreSQL), the API."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from telemetry.ingest.services import ingest_batch
from telemetry.metrics import partitions
from telemetry.metrics.rollups import metrics_rollup
from telemetry.models import MetricRollup, MetricSample
from telemetry.retention import telemetry_retention
from tests.api_base import assert_error_body
from tests.factories import DeviceFactory
from tests.telemetry.helpers import raw, sample, telemetry_payload

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _ingest(device, samples, received_at=None):
    ts = max(s["ts"] for s in samples)
    ingest_batch(
        messages=[
            raw(
                device.device_id,
                "telemetry",
                telemetry_payload(samples, ts=ts),
                received_at=received_at or T0 + dt.timedelta(minutes=2),
            )
        ],
        clock=lambda: T0,
    )


@pytest.fixture
def recent_enough(settings):
    settings.METRICS_RAW_RETENTION_DAYS = 10_000  # T0 is a fixed date; keep its samples


def _rollups(resolution):
    return list(
        MetricRollup.objects.filter(resolution=resolution)
        .order_by("device_id", "bucket")
        .values("device_id", "bucket", "samples", "cpu_pct_avg", "cpu_pct_max", "temp_c_avg", "temp_c_max")
    )


def test_minute_and_hour_rollups_are_correct_and_idempotent(recent_enough):
    a, b = DeviceFactory(), DeviceFactory()
    t = T0.timestamp()
    _ingest(
        a,
        [
            sample(t + 1, cpu_pct=10, temp_c=50),
            sample(t + 30, cpu_pct=30),
            sample(t + 61, cpu_pct=90, temp_c=70),
        ],
    )
    _ingest(b, [sample(t + 5, cpu_pct=50)])
    window = {"start": T0, "end": T0 + dt.timedelta(minutes=5)}

    written = metrics_rollup(resolution="1m", **window)
    first = _rollups("1m")
    assert written == 3
    assert [
        (r["device_id"], r["bucket"], r["samples"], r["cpu_pct_avg"], r["cpu_pct_max"]) for r in first
    ] == [
        (a.pk, T0, 2, 20.0, 30.0),
        (a.pk, T0 + dt.timedelta(minutes=1), 1, 90.0, 90.0),
        (b.pk, T0, 1, 50.0, 50.0),
    ]
    assert (first[0]["temp_c_avg"], first[0]["temp_c_max"]) == (50.0, 50.0)  # a missing temp is not a zero

    assert metrics_rollup(resolution="1m", **window) == 3
    assert _rollups("1m") == first  # same rows again, not twice as many

    _ingest(a, [sample(t + 45, cpu_pct=50)])  # a late sample: the rerun counts it
    metrics_rollup(resolution="1m", **window)
    assert _rollups("1m")[0]["samples"] == 3 and _rollups("1m")[0]["cpu_pct_avg"] == 30.0

    metrics_rollup(resolution="1h", start=T0, end=T0 + dt.timedelta(hours=1))
    hours = _rollups("1h")
    assert [(r["device_id"], r["samples"], r["cpu_pct_avg"], r["cpu_pct_max"]) for r in hours] == [
        (a.pk, 4, 45.0, 90.0),
        (b.pk, 1, 50.0, 50.0),
    ]


def test_retention_removes_only_what_is_older_than_its_setting(settings):
    device = DeviceFactory()
    now = timezone.now()
    old, fresh = now - dt.timedelta(days=8), now - dt.timedelta(hours=1)
    for ts in (old, fresh):
        MetricSample.objects.create(device=device, ts=ts, cpu_pct=1, mem_pct=1, link="wifi")
    MetricRollup.objects.create(device=device, resolution="1m", bucket=now - dt.timedelta(days=40), samples=1)
    MetricRollup.objects.create(device=device, resolution="1h", bucket=now - dt.timedelta(days=40), samples=1)
    settings.METRICS_RAW_RETENTION_DAYS, settings.METRICS_1M_RETENTION_DAYS = 7, 31

    removed = telemetry_retention(now=now)
    assert removed["samples"] == 1 and removed["rollups_1m"] == 1 and removed["rollups_1h"] == 0
    assert list(MetricSample.objects.values_list("ts", flat=True)) == [fresh]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="daily partitions exist on PostgreSQL only")
def test_partitions_are_created_ahead_rows_move_out_of_default_and_old_days_drop():
    device = DeviceFactory()
    today = timezone.now().date()
    noon = dt.datetime.combine(today, dt.time(12), tzinfo=dt.UTC)
    MetricSample.objects.create(device=device, ts=noon, cpu_pct=1, mem_pct=1, link="wifi")  # lands in default

    created = partitions.metrics_partitions_ensure(days_ahead=2, days_back=1, today=today)
    assert partitions.partition_name(today) in created and len(created) == 4
    assert partitions.metrics_partitions_ensure(days_ahead=2, days_back=1, today=today) == []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {partitions.partition_name(today)}")
        assert cursor.fetchone()[0] == 1
        cursor.execute(f"SELECT count(*) FROM {partitions.DEFAULT}")
        assert cursor.fetchone()[0] == 0
    assert MetricSample.objects.count() == 1

    dropped = partitions.metrics_partitions_drop(before=today)
    assert dropped == [partitions.partition_name(today - dt.timedelta(days=1))]
    assert MetricSample.objects.count() == 1


class TestMetricsApi:
    @pytest.fixture
    def device(self):
        device = DeviceFactory()
        now = timezone.now().timestamp()
        ingest_batch(
            messages=[
                raw(
                    device.device_id,
                    "telemetry",
                    telemetry_payload([sample(now - 120, cpu_pct=10), sample(now - 60, cpu_pct=20)]),
                )
            ]
        )
        return device

    def url(self, device, query=""):
        return f"/api/v1/devices/{device.device_id}/metrics/{query}"

    def test_raw_series(self, api_client_for, device):
        body = api_client_for("viewer").get(self.url(device, "?metric=cpu_pct")).json()
        assert body["resolution"] == "raw" and body["metrics"] == ["cpu_pct"] and body["truncated"] is False
        assert [p["cpu_pct"] for p in body["points"]] == [10, 20]
        assert set(body["points"][0]) == {"ts", "cpu_pct"}

    def test_rollup_series(self, api_client_for, device):
        now = timezone.now()
        metrics_rollup(
            resolution="1m", start=now - dt.timedelta(minutes=5), end=now + dt.timedelta(minutes=1)
        )
        body = api_client_for("viewer").get(self.url(device, "?resolution=1m&metric=cpu_pct,mem_pct")).json()
        assert sum(p["samples"] for p in body["points"]) == 2
        assert set(body["points"][0]) == {
            "ts",
            "samples",
            "cpu_pct_avg",
            "cpu_pct_max",
            "mem_pct_avg",
            "mem_pct_max",
        }

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("?resolution=5m", "resolution"),
            ("?metric=gpu_pct", "metric"),
            ("?after=2026-01-02T00:00:00Z&before=2026-01-01T00:00:00Z", "after"),
            ("?after=2025-01-01T00:00:00Z&before=2026-01-01T00:00:00Z", "after"),
            ("?after=yesterday", "after"),
            ("?metrc=cpu_pct", "metrc"),
        ],
    )
    def test_bad_queries_are_clear_400s(self, api_client_for, device, query, field):
        error = assert_error_body(
            api_client_for("viewer").get(self.url(device, query)), 400, "validation_error"
        )
        assert field in error["fields"]

    def test_unknown_device_is_404(self, api_client_for):
        assert_error_body(api_client_for("viewer").get("/api/v1/devices/cam-none/metrics/"), 404)
