"""Shared by the events/alerts/media/policies/commands tests (no tests of its own).

- `urlpatterns`: the project's URLs plus the telemetry routes of this part and the local
  store's /files/, for `pytest.mark.urls(URLS)` until fleet/urls.py mounts them itself.
- `record_publishes()`: a recording fake of fleet.mqtt.publish_many (publish and publish_on_commit end there).
- `inbound()`: build what the ingest hands a kind handler.
"""

import datetime as dt
import json
import time

import msgspec
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from fleet import mqtt
from fleet.urls import urlpatterns as fleet_urlpatterns
from protocol import topics
from protocol.messages import decode_down, decode_up, new_message_id
from telemetry.api.routes import register
from telemetry.ingest.types import Inbound

URLS = "tests.telemetry.test_events_support"

_router = DefaultRouter(trailing_slash=True)
register(_router)
urlpatterns = [
    path("api/v1/telemetry-b/", include(_router.urls)),
    path("files/", include("fleet.storage.urls")),
    *fleet_urlpatterns,
]
API = "/api/v1/telemetry-b"


class Published(list):
    """[(topic, payload, qos, retain)] in publish order; decode() gives the protocol messages."""

    def to(self, device_id: str, kind: str) -> list:
        topic = topics.down(device_id, kind)
        return [decode_down(kind, p) for t, p, _, _ in self if t == topic]

    def flags(self, device_id: str, kind: str) -> set[tuple[int, bool]]:
        topic = topics.down(device_id, kind)
        return {(q, r) for t, _, q, r in self if t == topic}


def record_publishes(monkeypatch) -> Published:
    """Replace fleet.mqtt.publish_many with a recorder; define a `published` fixture calling this."""
    sent = Published()

    def fake_publish_many(messages, *, qos=1, retain=False, timeout=None):
        sent.extend((topic, payload, qos, retain) for topic, payload in messages)

    monkeypatch.setattr(mqtt, "publish_many", fake_publish_many)
    return sent


def inbound(device, topic_kind: str, cls, /, **fields) -> Inbound:
    # Through the wire codec, as the ingest does: nested dicts become structs, tags are checked.
    config = cls.__struct_config__
    tag = {config.tag_field: config.tag} if config.tag_field else {}
    envelope = {"v": 1, "id": new_message_id(), "ts": time.time(), **tag, **fields}
    msg = decode_up(topic_kind, json.dumps(envelope))
    assert isinstance(msg, cls)
    return Inbound(
        device_pk=device.pk,
        device_id=device.device_id,
        kind=topic_kind,
        message=msg,
        received_at=dt.datetime.now(dt.UTC),
        topic=topics.up(device.device_id, topic_kind),
    )


def detection(event_id: str, **fields) -> dict:
    now = time.time()
    return {
        "event_id": event_id,
        "camera": "gate",
        "label": "person",
        "score": 0.9,
        "bbox": [0.1, 0.1, 0.2, 0.2],
        "start": now - 2,
        **fields,
    }


def as_builtins(msg) -> dict:
    return msgspec.to_builtins(msg)
