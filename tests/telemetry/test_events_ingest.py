"""up/events through the handler: bulk upsert by (device, event_id), idempotent, order-tolerant."""

import time

import pytest

from protocol.up import Events
from telemetry.events.handlers import handle_events
from telemetry.models.events import Event
from tests.factories import DeviceFactory
from tests.telemetry.test_events_support import detection, inbound

pytestmark = pytest.mark.django_db


def events_msg(device, *detections):
    return inbound(device, "events", Events, events=list(detections))


def test_start_then_end_updates_one_row_and_redelivery_changes_nothing():
    device = DeviceFactory()
    start = time.time() - 10
    handle_events(items=[events_msg(device, detection("ev-1", start=start), detection("ev-2", start=start))])
    assert Event.objects.filter(device=device).count() == 2
    sha = "a" * 64
    end_msg = events_msg(
        device, detection("ev-1", start=start, end=start + 3, media=[{"kind": "snapshot", "sha256": sha}])
    )
    handle_events(items=[end_msg])
    handle_events(items=[end_msg])
    event = Event.objects.get(device=device, event_id="ev-1")
    assert event.end.timestamp() == pytest.approx(start + 3)
    assert event.media_refs == [{"kind": "snapshot", "sha256": sha}]
    assert Event.objects.filter(device=device).count() == 2


def test_late_start_message_does_not_clear_the_end():
    device = DeviceFactory()
    start = time.time() - 10
    handle_events(items=[events_msg(device, detection("ev-9", start=start, end=start + 1))])
    handle_events(items=[events_msg(device, detection("ev-9", start=start))])
    assert Event.objects.get(event_id="ev-9").end is not None


def test_same_event_id_on_two_devices_is_two_events_and_batches_are_bulk(django_assert_max_num_queries):
    a, b = DeviceFactory(), DeviceFactory()
    items = [events_msg(a, *[detection(f"ev-{i}") for i in range(50)]), events_msg(b, detection("ev-1"))]
    with django_assert_max_num_queries(20):
        handle_events(items=items)
    assert Event.objects.filter(device=a).count() == 50
    assert Event.objects.filter(event_id="ev-1").count() == 2
