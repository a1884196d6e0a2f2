"""Model quality windows from up/telemetry: stored per device and model version through the ingest,
on the server clock, rolled up by the hour idempotently, summed into cohorts, and retained."""

import datetime as dt

import pytest

from telemetry.ingest.services import ingest_batch
from telemetry.models import ModelQualityRollup, ModelQualitySample
from telemetry.quality.selectors import quality_summary
from telemetry.quality.services import quality_rollup
from telemetry.quality.summary import summarize
from telemetry.retention import telemetry_retention
from tests.factories import DeviceFactory
from tests.telemetry.helpers import raw, sample, telemetry_payload

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def window(start: float, seconds: float = 120.0, **fields) -> dict:
    return {
        "model": "nanodet-g",
        "version": "2.0",
        "start": start,
        "end": start + seconds,
        "frames": 600,
        "latency_p50_ms": 30.0,
        "latency_p95_ms": 45.0,
        "fps": 5.0,
        "detections": {"person": 20, "car": 4},
        "score_mean": 0.6,
        **fields,
    }


def _ingest(device, quality, *, msg_ts=None, received_at=None):
    ts = msg_ts if msg_ts is not None else max(q["end"] for q in quality)
    result = ingest_batch(
        messages=[
            raw(
                device.device_id,
                "telemetry",
                telemetry_payload([sample(ts)], ts=ts, quality=quality),
                received_at=received_at or T0 + dt.timedelta(minutes=5),
            )
        ],
        clock=lambda: T0,
    )
    assert not result.dead_letters, result.dead_letters


@pytest.fixture(autouse=True)
def recent_enough(settings):
    settings.METRICS_RAW_RETENTION_DAYS = 10_000  # T0 is a fixed date; keep its windows


def test_windows_are_stored_per_device_and_version_on_the_server_clock():
    a = DeviceFactory()
    t = T0.timestamp()
    _ingest(a, [window(t), window(t, version="2.1", role="shadow", matched=9, reference=10, extra=2)])
    rows = {r.role: r for r in ModelQualitySample.objects.filter(device_id=a.pk)}
    assert rows["active"].version == "2.0" and rows["active"].end == T0 + dt.timedelta(seconds=120)
    assert rows["active"].detections == {"person": 20, "car": 4}
    assert (rows["shadow"].version, rows["shadow"].matched, rows["shadow"].reference) == ("2.1", 9, 10)
    # A device whose clock reads 1970 has its windows shifted onto the server clock.
    b = DeviceFactory()
    received = T0 + dt.timedelta(minutes=5)
    _ingest(b, [window(1000.0)], msg_ts=1120.0, received_at=received)
    (row,) = ModelQualitySample.objects.filter(device_id=b.pk)
    assert row.end == received and row.seconds == 120.0


def test_a_bad_quality_window_dead_letters_the_message_with_the_reason():
    a = DeviceFactory()
    t = T0.timestamp()
    payload = telemetry_payload([sample(t)], ts=t).replace(
        b'"quality":[]', b'"quality":[{"model":"m","version":"1","start":5,"end":1,"frames":1}]'
    )
    assert b'"quality":[{' in payload
    result = ingest_batch(messages=[raw(a.device_id, "telemetry", payload)], clock=lambda: T0)
    assert result.dead_letters == {"schema": 1}
    assert not ModelQualitySample.objects.exists()


def test_hourly_rollups_add_up_the_windows_and_are_idempotent():
    a, b = DeviceFactory(), DeviceFactory()
    t = T0.timestamp()
    _ingest(a, [window(t, frames=600, latency_p50_ms=30.0, latency_p95_ms=40.0)])
    _ingest(a, [window(t + 120, frames=200, latency_p50_ms=70.0, latency_p95_ms=80.0, crashes=1)])
    _ingest(b, [window(t, detections={"person": 2})])
    assert quality_rollup(start=T0, end=T0 + dt.timedelta(hours=1)) == 2
    assert quality_rollup(start=T0, end=T0 + dt.timedelta(hours=1)) == 2  # again: the same rows
    ra = ModelQualityRollup.objects.get(device_id=a.pk)
    assert (ra.windows, ra.frames, ra.crashes, ra.seconds) == (2, 800, 1, 240.0)
    assert ra.latency_p50_ms == pytest.approx((30 * 600 + 70 * 200) / 800)
    assert ra.detections == {"car": 8, "person": 40}
    # A rollup row adds up like the windows it came from.
    direct = summarize(ModelQualitySample.objects.filter(device_id=a.pk).values())
    rolled = summarize(ModelQualityRollup.objects.filter(device_id=a.pk).values())
    assert rolled.as_dict() == direct.as_dict()


def test_cohort_summary_rates_are_per_camera_hour():
    a, b, c = DeviceFactory(), DeviceFactory(), DeviceFactory()
    t = T0.timestamp()
    _ingest(a, [window(t, seconds=1800, frames=9000, detections={"person": 100})])
    _ingest(b, [window(t, seconds=1800, frames=4500, detections={"person": 50}, crashes=1)])
    _ingest(c, [window(t, version="1.0", detections={"person": 999})])  # another version: not counted
    s = quality_summary(device_pks=[a.pk, b.pk, c.pk], version="2.0", since=T0)
    assert len(s.devices) == 2 and s.hours == 1.0
    assert s.fps == pytest.approx(13500 / 3600)
    assert s.per_hour("person") == 150.0 and s.crashes_per_hour == 1.0
    other = quality_summary(device_pks=[a.pk, b.pk, c.pk], exclude_version="2.0", since=T0)
    assert other.devices == {c.pk}


def test_the_database_adds_up_a_cohort_as_the_rollups_do():
    """quality_summary (aggregated by the database, for the gates) = summarize (Python, for the rollups)
    over the same windows: mixed labels, missing latencies, scores and CPU, zero-frame windows."""
    devices = [DeviceFactory() for _ in range(4)]
    t = T0.timestamp()
    _ingest(devices[0], [window(t, cpu_pct=40.0, temp_c=51.5, crashes=2, dropped_frames=7)])
    _ingest(
        devices[0], [window(t + 120, frames=300, latency_p50_ms=80.0, latency_p95_ms=95.0, score_mean=0.9)]
    )
    _ingest(devices[1], [window(t, latency_p50_ms=None, latency_p95_ms=None, detections={"dog": 3})])
    _ingest(devices[2], [window(t, score_mean=None, detections={}, frames=0, cpu_pct=10.0, temp_c=60.0)])
    _ingest(devices[3], [window(t, role="shadow", matched=90, reference=100, extra=4)])
    _ingest(devices[3], [window(t + 120, version="1.0", detections={"person": 999})])  # another version
    pks = [d.pk for d in devices]
    rows = ModelQualitySample.objects.filter(device_id__in=pks, version="2.0")
    for role in ("active", "shadow"):
        by_db = quality_summary(device_pks=pks, role=role, version="2.0", since=T0)
        by_python = summarize(rows.filter(role=role).values())
        assert by_db.windows > 0 and by_db.devices == by_python.devices
        assert by_db.as_dict() == by_python.as_dict()
        db_figures, python_figures = by_db.figures(), by_python.figures()
        assert db_figures.pop("detections") == python_figures.pop("detections")
        assert db_figures == pytest.approx(python_figures)
    assert quality_summary(device_pks=pks, version="3.0", since=T0).as_dict() == summarize([]).as_dict()


def test_retention_drops_old_windows_and_rollups(settings):
    a = DeviceFactory()
    _ingest(a, [window(T0.timestamp())])
    quality_rollup(start=T0, end=T0 + dt.timedelta(hours=1))
    settings.METRICS_RAW_RETENTION_DAYS = 1
    settings.METRICS_1H_RETENTION_DAYS = 1
    removed = telemetry_retention(now=T0 + dt.timedelta(days=3))
    assert (removed["quality_windows"], removed["quality_rollups"]) == (1, 1)
