"""ingest_batch: one batch in, rows and dead letters out (no MQTT: the pipeline on its own)."""

import json

import pytest

from devices.models import DeviceState
from protocol import topics
from protocol.messages import MAX_PAYLOAD_BYTES
from telemetry.ingest import dispatch
from telemetry.ingest.services import ingest_batch
from telemetry.models import DeadLetter, DeviceStatus, MetricSample, ProcessedMessage
from tests.factories import DeviceFactory
from tests.telemetry.helpers import raw, sample, status_payload, telemetry_payload

pytestmark = pytest.mark.django_db


def test_telemetry_message_becomes_sample_rows_and_marks_device_seen():
    device = DeviceFactory()
    payload = telemetry_payload(
        [sample(cpu_pct=10), sample(cpu_pct=20, temp_c=61.5, queue_depth={"clip": 3})]
    )
    result = ingest_batch(messages=[raw(device.device_id, "telemetry", payload)])
    assert result.committed == {"telemetry": 1}
    rows = list(MetricSample.objects.filter(device=device).order_by("cpu_pct"))
    assert [r.cpu_pct for r in rows] == [10, 20]
    assert rows[1].temp_c == 61.5 and rows[1].queue_depth == {"clip": 3}
    device.refresh_from_db()
    assert device.last_seen_at is not None


def test_same_message_id_twice_is_one_row_in_a_batch_and_across_batches():
    device = DeviceFactory()
    payload = telemetry_payload(id="dup-1")
    first = ingest_batch(messages=[raw(device.device_id, "telemetry", payload)] * 2)
    second = ingest_batch(messages=[raw(device.device_id, "telemetry", payload)])
    assert (first.duplicates, second.duplicates) == (1, 1)
    assert second.committed == {}
    assert MetricSample.objects.filter(device=device).count() == 1
    assert ProcessedMessage.objects.filter(device_id=device.device_id, message_id="dup-1").count() == 1


def test_same_message_id_from_two_devices_is_two_messages():
    a, b = DeviceFactory(), DeviceFactory()
    payload = telemetry_payload(id="same-id")
    ingest_batch(messages=[raw(a.device_id, "telemetry", payload), raw(b.device_id, "telemetry", payload)])
    assert MetricSample.objects.count() == 2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (json.dumps({"v": 2, "id": "x", "ts": 1.0, "samples": []}).encode(), "unknown_version"),
        (json.dumps({"v": 1, "id": "x", "ts": 1.0, "samples": [{"cpu_pct": 500}]}).encode(), "schema"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "oversize"),
    ],
)
def test_bad_payload_is_dead_lettered_with_its_reason_and_the_rest_of_the_batch_commits(payload, reason):
    device = DeviceFactory()
    good = raw(device.device_id, "telemetry", telemetry_payload())
    result = ingest_batch(messages=[raw(device.device_id, "telemetry", payload), good])
    assert result.dead_letters == {reason: 1}
    letter = DeadLetter.objects.get()
    assert (letter.reason, letter.device_id, letter.kind) == (reason, device.device_id, "telemetry")
    assert letter.payload_size == len(payload) and len(letter.payload) <= 4096
    assert MetricSample.objects.filter(device=device).count() == 1


def test_unknown_and_decommissioned_devices_and_bad_topics_are_dead_lettered():
    gone = DeviceFactory(state=DeviceState.DECOMMISSIONED)
    messages = [
        raw("cam-nobody", "telemetry", telemetry_payload()),
        raw(gone.device_id, "telemetry", telemetry_payload()),
        raw("x", "telemetry", telemetry_payload(), topic=f"{topics.ROOT}/cam-0001/up/nonsense"),
        raw("x", "telemetry", telemetry_payload(), topic="elsewhere/entirely"),
    ]
    result = ingest_batch(messages=messages)
    assert result.dead_letters == {"unknown_device": 1, "decommissioned": 1, "topic": 2}
    assert MetricSample.objects.count() == 0
    assert set(DeadLetter.objects.values_list("device_id", flat=True)) == {
        "cam-nobody",
        gone.device_id,
        "cam-0001",
        "",
    }


def test_kind_without_handler_is_dead_lettered_no_handler(monkeypatch):
    device = DeviceFactory()
    monkeypatch.setitem(dispatch.HANDLERS, "ack", "telemetry.not_a_module.handle")
    dispatch.reset()
    payload = b'{"v": 1, "id": "a-1", "ts": 1.0, "command_id": "c-1", "status": "succeeded"}'
    result = ingest_batch(messages=[raw(device.device_id, "ack", payload)])
    dispatch.reset()
    assert result.dead_letters == {"no_handler": 1}
    assert DeadLetter.objects.get().message_id == "a-1"


def test_handler_exception_dead_letters_its_kind_only(monkeypatch):
    device = DeviceFactory()

    def explode(*, items):
        DeviceStatus.objects.filter(device_id=items[0].device_pk).update(reason="half-done")
        raise ValueError("boom")

    monkeypatch.setitem(dispatch._resolved, "status", explode)
    result = ingest_batch(
        messages=[
            raw(device.device_id, "status", status_payload()),
            raw(device.device_id, "telemetry", telemetry_payload()),
        ]
    )
    dispatch.reset()
    assert result.dead_letters == {"handler_error": 1}
    assert "ValueError: boom" in DeadLetter.objects.get().detail
    assert DeviceStatus.objects.get(device=device).reason == "seen"  # the handler's savepoint rolled back
    assert MetricSample.objects.filter(device=device).count() == 1


def test_samples_from_a_device_without_clock_are_shifted_onto_the_server_clock():
    device = DeviceFactory()
    payload = telemetry_payload([sample(ts=100.0), sample(ts=160.0)], ts=200.0)  # a 1970 clock
    ingest_batch(messages=[raw(device.device_id, "telemetry", payload)])
    first, second = MetricSample.objects.order_by("ts")
    assert (second.ts - first.ts).total_seconds() == pytest.approx(60)
    assert abs((second.ts - device.created_at).total_seconds()) < 120
