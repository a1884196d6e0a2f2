"""Thumbnails inline in up/events end reports: stored as the event's snapshot, or refused without losing the event."""

import base64
import hashlib

import cv2
import numpy as np
import pytest
import requests

from accounts.models import Role
from fleet import storage
from protocol.images import INLINE_THUMBNAIL_MAX_BYTES
from protocol.up import Events
from telemetry.events.handlers import handle_events
from telemetry.media.services import inline_request_id
from telemetry.models.events import Event
from telemetry.models.ingest import DeadLetter
from telemetry.models.media import Media, MediaState
from telemetry.models.policies import DataUsage
from telemetry.policies.usage import data_usage
from tests.api_base import assert_error_body
from tests.factories import DeviceFactory
from tests.telemetry.test_events_support import detection, inbound, record_publishes

pytestmark = pytest.mark.django_db


def image(ext: str = ".webp") -> bytes:
    img = np.full((72, 72, 3), 120, np.uint8)
    cv2.rectangle(img, (20, 8), (44, 66), (40, 40, 220), -1)
    ok, buf = cv2.imencode(ext, img, [cv2.IMWRITE_WEBP_QUALITY, 65] if ext == ".webp" else [])
    assert ok
    return buf.tobytes()


@pytest.fixture
def local_store(settings, tmp_path):
    settings.STORAGE_BACKEND = "local"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PUBLIC_URL = "http://testserver"


def end_report(device, event_id: str, thumbnail: str, **fields):
    det = detection(event_id, **fields)
    det["end"] = det["start"] + 3
    return inbound(device, "events", Events, events=[{**det, "thumbnail": thumbnail}])


@pytest.mark.parametrize(("ext", "content_type"), [(".webp", "image/webp"), (".jpg", "image/jpeg")])
def test_an_inline_thumbnail_becomes_the_events_verified_snapshot(
    local_store, operator_client, ext, content_type
):
    device = DeviceFactory()
    data = image(ext)
    b64 = base64.b64encode(data).decode()
    handle_events(items=[inbound(device, "events", Events, events=[detection("ev-1")])])  # the start
    handle_events(items=[end_report(device, "ev-1", b64)])
    event = Event.objects.get(device=device, event_id="ev-1")
    sha = hashlib.sha256(data).hexdigest()
    assert event.end is not None and event.media_refs == [{"kind": "snapshot", "sha256": sha}]
    media = Media.objects.get(device=device)
    assert (media.state, media.kind, media.content_type, media.size, media.sha256, media.event) == (
        MediaState.VERIFIED,
        "snapshot",
        content_type,
        len(data),
        sha,
        event,
    )
    assert media.request_id == inline_request_id("ev-1") and media.verified_at is not None
    with storage.open(media.key) as f:
        assert f.read() == data
    # Counted as thumbnail bytes: the base64 text, what crossed the link.
    assert DataUsage.objects.get(device=device, uplink_class="thumbnail").bytes == len(b64)
    assert data_usage(device=device, days=1)[0]["by_class"]["thumbnail"]["uploaded"] == len(b64)
    # The API shows it as it shows an uploaded snapshot, with a short-lived URL to the bytes.
    (shown,) = operator_client.get(f"/api/v1/events/{event.pk}/").json()["media"]
    assert (shown["kind"], shown["content_type"], shown["size"], shown["sha256"]) == (
        "snapshot",
        content_type,
        len(data),
        sha,
    )
    response = operator_client.get(shown["url"])
    assert b"".join(response.streaming_content) == data


def test_the_same_report_delivered_again_stores_and_counts_once(local_store):
    device = DeviceFactory()
    b64 = base64.b64encode(image()).decode()
    handle_events(items=[end_report(device, "ev-2", b64)])
    handle_events(items=[end_report(device, "ev-2", b64)])  # a new message id, the same event
    assert Media.objects.filter(device=device).count() == 1
    assert DataUsage.objects.get(device=device, uplink_class="thumbnail").bytes == len(b64)
    assert len(Event.objects.get(device=device, event_id="ev-2").media_refs) == 1


TOO_BIG = base64.b64encode(b"\xff\xd8\xff" + b"\x00" * INLINE_THUMBNAIL_MAX_BYTES).decode()


@pytest.mark.parametrize(
    ("thumbnail", "detail"),
    [
        ("%%% not base64 %%%", "not base64"),
        (TOO_BIG, "too large"),
        (base64.b64encode(b"GIF89a" + bytes(100)).decode(), "not a JPEG or WebP"),
    ],
)
def test_a_bad_inline_thumbnail_is_dead_lettered_and_the_event_kept(local_store, thumbnail, detail):
    device = DeviceFactory()
    good = base64.b64encode(image()).decode()
    handle_events(items=[end_report(device, "ev-3", thumbnail), end_report(device, "ev-4", good)])
    bad_event = Event.objects.get(device=device, event_id="ev-3")
    assert bad_event.end is not None and bad_event.media_refs == []  # the metadata is all there
    media = Media.objects.get(device=device, request_id=inline_request_id("ev-3"))
    assert (media.state, media.error) == (MediaState.REFUSED, "bad_thumbnail") and detail in media.detail
    letter = DeadLetter.objects.get(device_id=device.device_id)
    assert (letter.reason, letter.kind) == ("bad_thumbnail", "events") and "ev-3" in letter.detail
    assert bytes(letter.payload) == thumbnail.encode()[:4096] and letter.payload_size == len(thumbnail)
    # The other event of the same batch is stored with its thumbnail; nothing is counted for the bad one.
    assert Media.objects.get(request_id=inline_request_id("ev-4")).state == MediaState.VERIFIED
    assert DataUsage.objects.get(device=device, uplink_class="thumbnail").bytes == len(good)


def test_a_store_failure_refuses_the_thumbnail_not_the_event(local_store, monkeypatch):
    device = DeviceFactory()

    def unavailable(key, fileobj):
        raise requests.ConnectionError("S3 endpoint unreachable")

    monkeypatch.setattr(storage, "put", unavailable)
    handle_events(items=[end_report(device, "ev-5", base64.b64encode(image()).decode())])
    assert Event.objects.get(device=device, event_id="ev-5").end is not None
    media = Media.objects.get(device=device)
    assert (media.state, media.error) == (
        MediaState.REFUSED,
        "storage_error",
    ) and "unreachable" in media.detail
    assert DeadLetter.objects.get(device_id=device.device_id).reason == "storage_error"
    assert not DataUsage.objects.filter(device=device).exists()


def test_inline_thumbnail_goes_to_s3(s3_settings):
    device = DeviceFactory()
    data = image()
    handle_events(items=[end_report(device, "ev-6", base64.b64encode(data).decode())])
    media = Media.objects.get(device=device)
    assert media.state == MediaState.VERIFIED and media.key.endswith(".webp")
    from telemetry.media.services import media_url

    assert requests.get(media_url(media), timeout=30).content == data


def test_upload_clip_through_the_commands_api(
    api_client_for, monkeypatch, django_capture_on_commit_callbacks
):
    published = record_publishes(monkeypatch)
    device = DeviceFactory()
    handle_events(items=[inbound(device, "events", Events, events=[detection("ev-7")])])
    operator = api_client_for(Role.OPERATOR)
    payload = {"device": device.device_id, "name": "upload_clip", "args": {"event_id": "ev-7"}}
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post("/api/v1/commands/", payload, format="json")
    assert response.status_code == 201, response.content
    (cmd,) = published.to(device.device_id, "cmd")
    assert (cmd.name, cmd.args) == ("upload_clip", {"event_id": "ev-7"})
    missing = {**payload, "args": {"event_id": "ev-404"}}
    assert_error_body(operator.post("/api/v1/commands/", missing, format="json"), 400, "validation_error")
