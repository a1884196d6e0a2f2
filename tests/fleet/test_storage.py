"""fleet.storage on both backends: local files behind Django-signed URLs, and a real S3 server (SeaweedFS)."""

import hashlib
import io
import time
from urllib.parse import urlsplit

import pytest
import requests
from django.urls import include, path

from fleet import storage
from fleet.storage.base import StorageError
from fleet.urls import urlpatterns as fleet_urlpatterns

# The project urlconf plus the /files/ mount, until fleet/urls.py includes fleet.storage.urls itself.
urlpatterns = [*fleet_urlpatterns, path("files/", include("fleet.storage.urls"))]
pytestmark = pytest.mark.urls(__name__)

MIB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def local(settings, tmp_path):
    settings.STORAGE_BACKEND = "local"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PUBLIC_URL = "http://testserver"
    return tmp_path / "media"


def put_part(client, url: str, body: bytes):
    return client.generic("PUT", url, body, content_type="application/octet-stream")


# -- local backend ---------------------------------------------------------------


def test_local_put_open_exists_delete(local):
    data = b"snapshot-bytes" * 1000
    assert storage.put("media/cam-1/ev-1.jpg", io.BytesIO(data)) == (len(data), sha(data))
    assert storage.exists("media/cam-1/ev-1.jpg")
    with storage.open("media/cam-1/ev-1.jpg") as f:
        assert f.read() == data
    storage.delete("media/cam-1/ev-1.jpg")
    storage.delete("media/cam-1/ev-1.jpg")  # idempotent
    assert not storage.exists("media/cam-1/ev-1.jpg")
    with pytest.raises(StorageError) as err:
        storage.open("media/cam-1/ev-1.jpg")
    assert err.value.code == "not_found"


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "/abs", "a/../b", "a//b", ".multipart/x", "a/./b", "sp ace", ""]
)
def test_unsafe_keys_are_refused(local, key):
    with pytest.raises(StorageError) as err:
        storage.put(key, io.BytesIO(b"x"))
    assert err.value.code == "bad_key"


def test_local_multipart_round_trip_through_signed_urls(local, client):
    data = bytes(range(256)) * 5000  # 1.28 MB in 3 parts of 512 KiB
    part_size = 512 * 1024
    upload_id = storage.multipart_create("media/cam-1/clip.mp4")
    urls = storage.multipart_part_urls("media/cam-1/clip.mp4", upload_id, [1, 2, 3], 60, part_size)
    etags = {}
    for n in (3, 1, 2):  # any order
        response = put_part(client, urls[n], data[(n - 1) * part_size : n * part_size])
        assert response.status_code == 200, response.content
        etags[n] = response["ETag"]
    # A part sent twice (power cut mid-part) simply replaces the first copy.
    assert put_part(client, urls[2], data[part_size : 2 * part_size])["ETag"] == etags[2]
    assert storage.multipart_complete("media/cam-1/clip.mp4", upload_id, etags) == (len(data), sha(data))
    with storage.open("media/cam-1/clip.mp4") as f:
        assert f.read() == data
    assert not any((local / ".multipart").iterdir())


def test_local_wrong_etag_or_missing_part_is_refused(local, client):
    upload_id = storage.multipart_create("k/obj")
    urls = storage.multipart_part_urls("k/obj", upload_id, [1, 2], 60)
    etag = put_part(client, urls[1], b"one")["ETag"]
    with pytest.raises(StorageError) as err:
        storage.multipart_complete("k/obj", upload_id, [(1, '"' + "0" * 32 + '"')])
    assert err.value.code == "bad_part"
    with pytest.raises(StorageError) as err:
        storage.multipart_complete("k/obj", upload_id, [(1, etag), (2, etag)])
    assert err.value.code == "bad_part"
    assert not storage.exists("k/obj")


def test_local_oversize_part_is_a_413(local, client):
    upload_id = storage.multipart_create("k/big")
    url = storage.multipart_part_urls("k/big", upload_id, [1], 60, max_part_bytes=1000)[1]
    response = put_part(client, url, b"x" * 1001)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert put_part(client, url, b"x" * 1000).status_code == 200


def test_local_signatures_are_checked(local, client, settings):
    upload_id = storage.multipart_create("k/sig")
    urls = storage.multipart_part_urls("k/sig", upload_id, [1, 2], 60)
    tampered = urls[1][:-3] + ("AAA" if not urls[1].endswith("AAA") else "BBB")
    assert put_part(client, tampered, b"x").json()["error"]["code"] == "bad_signature"
    # The signature for part 1 does not open part 2.
    other = urls[1].replace(f"/{upload_id}/1?", f"/{upload_id}/2?")
    assert put_part(client, other, b"x").status_code == 403
    assert put_part(client, urls[1].split("?")[0], b"x").status_code == 403
    # Nor a GET of some object.
    storage.put("k/secret", io.BytesIO(b"s"))
    get_url = storage.presigned_get("k/secret", 60)
    assert client.get(get_url.replace("k/secret", "k/sig")).status_code == 403


def test_local_get_serves_the_range_a_resuming_download_asks_for(local, client):
    data = bytes(range(256)) * 40  # 10,240 bytes
    storage.put("artifacts/m.onnx", io.BytesIO(data))
    url = storage.presigned_get("artifacts/m.onnx", 60)

    def get(range_header: str | None):
        response = client.get(url, **({"HTTP_RANGE": range_header} if range_header else {}))
        return response, b"".join(response.streaming_content) if response.streaming else response.content

    whole, body = get(None)
    assert whole.status_code == 200 and body == data and whole["Accept-Ranges"] == "bytes"
    rest, body = get("bytes=4096-")
    assert rest.status_code == 206 and body == data[4096:]
    assert rest["Content-Range"] == "bytes 4096-10239/10240" and rest["Content-Length"] == "6144"
    middle, body = get("bytes=10-19")
    assert middle.status_code == 206 and body == data[10:20]
    past_end, body = get("bytes=20000-")
    assert past_end.status_code == 416 and past_end["Content-Range"] == "bytes */10240"
    for ignored in ("bytes=5-1", "bytes=0-1,5-9", "items=0-5"):  # not one valid range: the whole object
        response, body = get(ignored)
        assert response.status_code == 200 and body == data, ignored


def test_local_expired_urls_are_refused(local, client, monkeypatch):
    storage.put("k/snap.jpg", io.BytesIO(b"jpeg"))
    get_url = storage.presigned_get("k/snap.jpg", 5)
    response = client.get(get_url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"jpeg"
    assert response["Content-Type"] == "image/jpeg"
    upload_id = storage.multipart_create("k/late")
    part_url = storage.multipart_part_urls("k/late", upload_id, [1], 5)[1]
    later = time.time() + 6
    monkeypatch.setattr(time, "time", lambda: later)
    assert client.get(get_url).json()["error"]["code"] == "expired"
    assert put_part(client, part_url, b"x").status_code == 403


def test_local_round_trip_over_http_with_the_edge_uploader(local, live_server, settings, tmp_path):
    """The edge agent's own uploader PUTs real HTTP requests against the live server."""
    from edge.uplink.db import UplinkDB
    from edge.uplink.media import GrantPart, MediaUploader, UploadGrant

    settings.PUBLIC_URL = live_server.url
    data = b"clip" * (300 * 1024)  # 1.2 MB: more than Django's in-memory upload limit, in 2 parts
    source = tmp_path / "clip.mp4"
    source.write_bytes(data)
    part_size = MIB
    upload_id = storage.multipart_create("media/live/clip.mp4")
    urls = storage.multipart_part_urls("media/live/clip.mp4", upload_id, [1, 2], 60, part_size)
    grant = UploadGrant(
        request_id="rq-1",
        upload_id=upload_id,
        part_size=part_size,
        parts=tuple(GrantPart(n, u) for n, u in sorted(urls.items())),
        expires=time.time() + 60,
    )
    db = UplinkDB(tmp_path / "uplink.sqlite3")
    try:
        parts = MediaUploader(db, max_attempts=1).upload(source, grant)
    finally:
        db.close()
    size, digest = storage.multipart_complete(
        "media/live/clip.mp4", upload_id, [(p["number"], p["etag"]) for p in parts]
    )
    assert (size, digest) == (len(data), sha(data))
    assert requests.get(storage.presigned_get("media/live/clip.mp4", 30), timeout=10).content == data


def test_local_readiness(local, client, settings):
    body = client.get("/readyz").json()
    assert body["checks"]["storage"]["status"] == "ok"


# -- S3 (SeaweedFS) --------------------------------------------------------------


def test_s3_put_open_exists_delete(s3_settings):
    data = b"model-artifact" * 5000
    assert storage.put("artifacts/m1.onnx", io.BytesIO(data)) == (len(data), sha(data))
    assert storage.exists("artifacts/m1.onnx")
    body = storage.open("artifacts/m1.onnx")
    try:
        assert body.read() == data
    finally:
        body.close()
    assert requests.get(storage.presigned_get("artifacts/m1.onnx", 30), timeout=10).content == data
    storage.delete("artifacts/m1.onnx")
    assert not storage.exists("artifacts/m1.onnx")
    with pytest.raises(StorageError) as err:
        storage.open("artifacts/m1.onnx")
    assert err.value.code == "not_found"


def test_s3_presigned_multipart_round_trip(s3_settings):
    # S3 parts except the last must be >= 5 MiB.
    data = (bytes(range(256)) * (6 * 4096))[: 6 * MIB] + b"tail-bytes"
    part_size = 5 * MIB
    upload_id = storage.multipart_create("media/cam-9/clip.mp4")
    urls = storage.multipart_part_urls("media/cam-9/clip.mp4", upload_id, [1, 2], 60)
    assert urlsplit(urls[1]).netloc == urlsplit(s3_settings.endpoint_url).netloc
    etags = {}
    for n in (2, 1):
        response = requests.put(urls[n], data=data[(n - 1) * part_size : n * part_size], timeout=30)
        assert response.status_code == 200, response.text
        etags[n] = response.headers["ETag"]
    assert storage.multipart_complete("media/cam-9/clip.mp4", upload_id, etags) == (len(data), sha(data))
    assert requests.get(storage.presigned_get("media/cam-9/clip.mp4", 30), timeout=10).content == data


def test_s3_wrong_etag_is_refused_and_abort_is_idempotent(s3_settings):
    upload_id = storage.multipart_create("media/cam-9/bad.jpg")
    url = storage.multipart_part_urls("media/cam-9/bad.jpg", upload_id, [1], 60)[1]
    assert requests.put(url, data=b"jpeg", timeout=10).status_code == 200
    with pytest.raises(StorageError) as err:
        storage.multipart_complete("media/cam-9/bad.jpg", upload_id, [(1, '"' + "0" * 32 + '"')])
    assert err.value.code == "bad_part"
    storage.multipart_abort("media/cam-9/bad.jpg", upload_id)
    storage.multipart_abort("media/cam-9/bad.jpg", upload_id)
    assert not storage.exists("media/cam-9/bad.jpg")


def test_s3_readiness_reports_a_missing_bucket(s3_settings, settings):
    storage.check_storage()
    settings.S3_BUCKET = "no-such-bucket-here"
    with pytest.raises(StorageError) as err:
        storage.check_storage()
    assert err.value.code == "unavailable"


@pytest.mark.parametrize(
    ("endpoint", "bucket_origin"),
    [
        ("http://127.0.0.1:8333", "http://127.0.0.1:8333"),
        ("https://S3.Example.NET", "https://s3.example.net:443"),
    ],
)
def test_download_origins_are_the_server_and_where_presigned_urls_point(settings, endpoint, bucket_origin):
    """What an enrolling device is told it may fetch artifacts from (presigning is local: no S3 needed)."""
    settings.PUBLIC_URL = "https://fleet.example.com"
    settings.STORAGE_BACKEND = "local"
    assert storage.download_origins() == ["https://fleet.example.com:443"]
    settings.STORAGE_BACKEND, settings.S3_ENDPOINT_URL = "s3", endpoint
    settings.S3_ACCESS_KEY_ID, settings.S3_SECRET_ACCESS_KEY = "key", "secret"
    assert storage.download_origins() == sorted(["https://fleet.example.com:443", bucket_origin])
    assert urlsplit(storage.presigned_get("models/x.onnx", 60)).netloc.lower() in bucket_origin
