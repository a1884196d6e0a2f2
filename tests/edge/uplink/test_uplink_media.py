"""Chunked, resumable media upload against a local part store."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from uplink_part_server import PartServer

from edge.uplink import MediaUploader, UplinkDB, UplinkError, UploadGrant


@pytest.fixture
def server():
    s = PartServer()
    yield s
    s.close()


@pytest.fixture
def db(tmp_path):
    d = UplinkDB(tmp_path / "uplink.db")
    yield d
    d.close()


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(os.urandom(10_000))
    return path


def uploader(db, **kw):
    return MediaUploader(db, backoff=(0.01, 0.02), timeout=5, **kw)


def test_upload_all_parts_and_return_etags(server, db, clip):
    grant = UploadGrant.from_message(server.grant("u1", 10_000, 4096, time.time() + 60))
    parts = uploader(db).upload(clip, grant)
    data = clip.read_bytes()
    assert [p["number"] for p in parts] == [1, 2, 3]
    assert parts[0]["etag"] == f'"{hashlib.md5(data[:4096]).hexdigest()}"'
    assert server.assembled("u1") == data
    assert sorted(server.puts.values()) == [1, 1, 1]
    # Lean requests: what S3 needs and no more (every byte of a thumbnail upload counts).
    assert {h.lower() for h in server.headers[0]} == {
        "host",
        "user-agent",
        "accept-encoding",
        "content-length",
    }
    assert (
        server.headers[0]["User-Agent"] == "fleet-edge" and server.headers[0]["Accept-Encoding"] == "identity"
    )


def test_retries_dropped_connection_and_5xx(server, db, clip):
    server.plan[2] = ["drop", "500", "500"]
    sleeps = []
    up = uploader(db, sleep=sleeps.append)
    up.upload(clip, UploadGrant.from_message(server.grant("u2", 10_000, 4096, time.time() + 60)))
    assert server.assembled("u2") == clip.read_bytes()
    assert server.puts[2] == 4
    assert len(sleeps) == 3 and sleeps[0] <= sleeps[2]  # backoff grows


def test_gives_up_after_max_attempts_keeping_finished_parts(server, db, clip):
    server.plan[3] = ["500"] * 10
    up = uploader(db, sleep=lambda s: None, max_attempts=3)
    grant = UploadGrant.from_message(server.grant("u3", 10_000, 4096, time.time() + 60))
    with pytest.raises(UplinkError) as err:
        up.upload(clip, grant)
    assert err.value.reason == "upload_failed"
    assert set(up.done_parts("u3")) == {1, 2}
    server.plan[3] = []
    parts = up.upload(clip, grant)  # resumes at part 3
    assert [p["number"] for p in parts] == [1, 2, 3]
    assert server.puts[1] == 1 and server.puts[3] == 4
    assert server.assembled("u3") == clip.read_bytes()
    up.forget("u3")
    assert up.done_parts("u3") == {}


def test_refuses_expired_grant(server, db, clip):
    grant = UploadGrant.from_message(server.grant("u4", 10_000, 4096, time.time() - 1))
    with pytest.raises(UplinkError) as err:
        uploader(db).upload(clip, grant)
    assert err.value.reason == "grant_expired"
    assert sum(server.puts.values()) == 0


def test_grant_expiring_mid_upload_stops_before_next_part(server, db, clip):
    now = [1000.0]

    def clock():
        now[0] += 1  # one "second" per check
        return now[0]

    grant = UploadGrant.from_message(server.grant("u5", 10_000, 4096, 1002.5))
    with pytest.raises(UplinkError) as err:
        uploader(db, clock=clock).upload(clip, grant)
    assert err.value.reason == "grant_expired"
    assert 0 < sum(server.puts.values()) < 3


def test_rejected_part_is_not_retried(server, db, clip):
    server.plan[1] = ["403"]
    with pytest.raises(UplinkError) as err:
        uploader(db).upload(
            clip, UploadGrant.from_message(server.grant("u6", 10_000, 4096, time.time() + 60))
        )
    assert err.value.reason == "part_rejected"
    assert server.puts[1] == 1


def test_grant_must_cover_the_file(server, db, clip):
    grant = server.grant("u7", 10_000, 4096, time.time() + 60)
    grant["parts"] = grant["parts"][:2]
    with pytest.raises(UplinkError) as err:
        uploader(db).upload(clip, UploadGrant.from_message(grant))
    assert err.value.reason == "grant_mismatch"


def test_grant_from_protocol_message(server):
    import msgspec

    from protocol.down import MediaGranted

    raw = {"v": 1, "id": "m1", "ts": 1.0, "result": "granted", **server.grant("u8", 10, 4096, 2e9)}
    msg = msgspec.convert(raw, MediaGranted)
    grant = UploadGrant.from_message(msg)
    assert grant.upload_id == "u8" and grant.parts[0].number == 1 and grant.expires == 2e9
