"""up/media grants end to end: request -> down/media grant -> PUT parts -> complete -> verified media.

Against the local store (signed part URLs through the Django test client) and a real S3
server (SeaweedFS, presigned UploadPart URLs through HTTP).
"""

import hashlib

import pytest
import requests

from fleet import storage
from protocol.down import MediaGranted, MediaRefused
from protocol.up import Events, MediaComplete, MediaRequest
from telemetry.events.handlers import handle_events
from telemetry.media.handlers import handle_media
from telemetry.models.media import Media, MediaState
from telemetry.models.policies import BandwidthPolicy, DataUsage
from telemetry.policies.usage import bytes_used_today
from tests.factories import DeviceFactory
from tests.telemetry.test_events_support import URLS, detection, inbound, record_publishes

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]


@pytest.fixture
def published(monkeypatch):
    return record_publishes(monkeypatch)


@pytest.fixture
def local_store(settings, tmp_path):
    settings.STORAGE_BACKEND = "local"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PUBLIC_URL = "http://testserver"


@pytest.fixture
def device():
    device = DeviceFactory()
    handle_events(items=[inbound(device, "events", Events, events=[detection("ev-1")])])
    return device


def ask(device, published, capture, *, data: bytes, request_id="rq-1", sha=None, **fields):
    fields = {
        "request_id": request_id,
        "event_id": "ev-1",
        "kind": "snapshot",
        "size": len(data),
        "sha256": sha or hashlib.sha256(data).hexdigest(),
        "content_type": "image/jpeg",
        **fields,
    }
    with capture(execute=True):
        handle_media(items=[inbound(device, "media", MediaRequest, **fields)])
    return published.to(device.device_id, "media")[-1]


def complete(device, published, capture, request_id, parts):
    before = len(published)
    with capture(execute=True):
        handle_media(items=[inbound(device, "media", MediaComplete, request_id=request_id, parts=parts)])
    answers = published[before:]
    return [m for m in published.to(device.device_id, "media")[-len(answers) :]] if answers else []


def put_parts_local(client, grant, data):
    parts = []
    for part in grant.parts:
        body = data[(part.number - 1) * grant.part_size : part.number * grant.part_size]
        response = client.generic("PUT", part.url, body, content_type="application/octet-stream")
        assert response.status_code == 200, response.content
        parts.append({"number": part.number, "etag": response["ETag"]})
    return parts


def test_local_grant_upload_complete_and_presigned_download(
    local_store, device, published, django_capture_on_commit_callbacks, client
):
    data = b"\xff\xd8jpeg" * 20000
    grant = ask(device, published, django_capture_on_commit_callbacks, data=data)
    assert isinstance(grant, MediaGranted), grant
    assert published.flags(device.device_id, "media") == {(1, False)}
    # Asking again (a restarted device) returns the same upload.
    again = ask(device, published, django_capture_on_commit_callbacks, data=data)
    assert again.upload_id == grant.upload_id
    parts = put_parts_local(client, grant, data)
    assert complete(device, published, django_capture_on_commit_callbacks, "rq-1", parts) == []
    media = Media.objects.get(request_id="rq-1")
    assert media.state == MediaState.VERIFIED and media.event.event_id == "ev-1"
    with storage.open(media.key) as f:
        assert f.read() == data
    assert DataUsage.objects.get(device=device, uplink_class="thumbnail").bytes == len(data)
    # The API serves it through a short-lived URL.
    from telemetry.media.services import media_url

    response = client.get(media_url(media))
    assert b"".join(response.streaming_content) == data


def test_wrong_sha256_is_refused_and_the_object_deleted(
    local_store, device, published, django_capture_on_commit_callbacks, client
):
    data = b"not what was promised"
    grant = ask(device, published, django_capture_on_commit_callbacks, data=data, sha="0" * 64)
    parts = put_parts_local(client, grant, data)
    (refused,) = complete(device, published, django_capture_on_commit_callbacks, "rq-1", parts)
    assert isinstance(refused, MediaRefused) and refused.error == "hash_mismatch"
    media = Media.objects.get(request_id="rq-1")
    assert (media.state, media.error) == (MediaState.REFUSED, "hash_mismatch")
    assert not storage.exists(media.key)
    assert not DataUsage.objects.exists()


def test_oversize_is_refused_at_request_and_at_the_part_url(
    local_store, device, published, django_capture_on_commit_callbacks, client
):
    BandwidthPolicy.objects.create(name="default", max_kbps=100, max_snapshot_bytes=1000)
    refused = ask(device, published, django_capture_on_commit_callbacks, data=b"x" * 1001)
    assert isinstance(refused, MediaRefused) and refused.error == "too_large"
    # A device that sends more than it asked for: the part URL stops it (413), completion refuses it.
    grant = ask(device, published, django_capture_on_commit_callbacks, data=b"x" * 10, request_id="rq-2")
    response = client.generic(
        "PUT", grant.parts[0].url, b"x" * (grant.part_size + 1), content_type="application/octet-stream"
    )
    assert response.status_code == 413
    etag = client.generic("PUT", grant.parts[0].url, b"x" * 20, content_type="application/octet-stream")[
        "ETag"
    ]
    (refused,) = complete(
        device, published, django_capture_on_commit_callbacks, "rq-2", [{"number": 1, "etag": etag}]
    )
    assert refused.error == "size_mismatch"


@pytest.mark.parametrize(
    ("policy", "fields", "error"),
    [
        ({"daily_budget_mb": 0}, {}, "quota_exceeded"),
        ({"classes_allowed": ["alert", "event"]}, {}, "class_not_allowed"),
        ({}, {"content_type": "application/zip"}, "unsupported_type"),
        ({}, {"event_id": "ev-unknown"}, "unknown_event"),
    ],
)
def test_policy_refusals(
    local_store, device, published, django_capture_on_commit_callbacks, policy, fields, error
):
    BandwidthPolicy.objects.create(name="p", max_kbps=100, device=device, **policy)
    refused = ask(device, published, django_capture_on_commit_callbacks, data=b"jpeg", **fields)
    assert isinstance(refused, MediaRefused) and refused.error == error
    assert Media.objects.get(request_id="rq-1").error == error


def test_daily_quota_counts_verified_uploads(
    local_store, device, published, django_capture_on_commit_callbacks, client
):
    BandwidthPolicy.objects.create(name="p", max_kbps=100, device=device, daily_budget_mb=1)
    data = b"y" * (700 * 1024)
    grant = ask(device, published, django_capture_on_commit_callbacks, data=data)
    complete(
        device, published, django_capture_on_commit_callbacks, "rq-1", put_parts_local(client, grant, data)
    )
    assert bytes_used_today(device=device) == len(data)
    refused = ask(device, published, django_capture_on_commit_callbacks, data=data, request_id="rq-2")
    assert refused.error == "quota_exceeded"


def test_s3_presigned_grant_round_trip(s3_settings, device, published, django_capture_on_commit_callbacks):
    data = bytes(range(256)) * 40000 + b"end"  # ~10 MB: two parts of 8 MiB and the rest
    grant = ask(
        device,
        published,
        django_capture_on_commit_callbacks,
        data=data,
        kind="clip",
        content_type="video/mp4",
    )
    assert isinstance(grant, MediaGranted) and len(grant.parts) == 2
    parts = []
    for part in grant.parts:
        body = data[(part.number - 1) * grant.part_size : part.number * grant.part_size]
        response = requests.put(part.url, data=body, timeout=30)
        assert response.status_code == 200, response.text
        parts.append({"number": part.number, "etag": response.headers["ETag"]})
    assert complete(device, published, django_capture_on_commit_callbacks, "rq-1", parts) == []
    media = Media.objects.get(request_id="rq-1")
    assert media.state == MediaState.VERIFIED
    from telemetry.media.services import media_url

    assert requests.get(media_url(media), timeout=30).content == data
