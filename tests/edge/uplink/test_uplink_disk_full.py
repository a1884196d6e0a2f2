"""A full disk: a clear error, nothing already queued lost."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from edge.uplink import UplinkDB, UplinkError, UplinkQueue


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (needs root and a kernel that allows it), unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(q: UplinkQueue, payload_size: int, limit: int = 2000) -> tuple[list[int], UplinkError]:
    ids = []
    for n in range(limit):
        try:
            ids.append(q.put(("event", "clip", "alert")[n % 3], "t", bytes([n % 256]) * payload_size))
        except UplinkError as exc:
            return ids, exc
    raise AssertionError("the disk never filled")


def assert_all_present(db_path, ids):
    with contextlib.closing(UplinkQueue.open(db_path, quota_bytes=10**9, min_free_bytes=0)) as q:
        assert q.db.integrity_check() == "ok"
        rows = {r[0]: bytes(r[1]) for r in q.db.query("SELECT id, payload FROM uplink_item")}
        assert set(ids) <= set(rows)
        assert all(len(p) > 0 for p in rows.values())


def test_real_enospc_is_a_clear_error_and_loses_nothing(small_fs):
    db_path = small_fs / "uplink.db"
    q = UplinkQueue(UplinkDB(db_path, reserve_bytes=64 * 1024), quota_bytes=10**9, min_free_bytes=0)
    ids, err = fill(q, 8000)
    assert err.reason == "disk_full" and "nothing already queued was lost" in str(err)
    assert len(ids) > 10
    assert q.db.integrity_check() == "ok"
    # The queue is still usable: reads work, and an ack gets through on the released reserve.
    assert q.peek_next() is not None
    assert q.ack(ids[0])
    q.close()
    assert_all_present(db_path, ids[1:])


def test_free_space_floor_evicts_before_the_disk_fills(small_fs):
    db_path = small_fs / "uplink.db"
    q = UplinkQueue(
        UplinkDB(db_path, reserve_bytes=0, wal_autocheckpoint_pages=32),
        quota_bytes=10**9,
        min_free_bytes=400 * 1024,
    )
    alerts = []
    for n in range(200):  # ~1.6 MB of clips through a 1 MiB filesystem
        q.put("clip", "t", bytes([n % 256]) * 8000)
        if n % 20 == 0:
            alerts.append(q.put("alert", "t", b"a" * 500))
    assert q.evictions_by_class()["clip"] > 0
    assert q.evictions_by_class()["alert"] == 0
    assert all(q.get(i) is not None for i in alerts)
    assert q.db.integrity_check() == "ok"
    # Acks still work: the floor kept room for the WAL.
    while (item := q.peek_next()) is not None:
        assert q.ack(item.id)
    assert len(q) == 0


def test_sqlite_page_limit_full_is_a_clear_error_and_loses_nothing(tmp_path):
    """Same check without a mount: SQLite reports SQLITE_FULL at max_page_count."""
    db_path = tmp_path / "uplink.db"
    q = UplinkQueue.open(db_path, quota_bytes=10**9, min_free_bytes=0)
    q.db.query("PRAGMA max_page_count = 60")
    ids, err = fill(q, 3000)
    assert err.reason == "disk_full"
    assert len(ids) > 5
    assert q.db.integrity_check() == "ok"
    q.close()
    assert_all_present(db_path, ids)


def test_tiny_quota_refuses_what_cannot_fit_and_keeps_the_rest(tmp_path):
    q = UplinkQueue.open(tmp_path / "uplink.db", quota_bytes=5000)
    alerts = [q.put("alert", "t", b"a" * 999) for _ in range(5)]  # exactly 5000 bytes
    with pytest.raises(UplinkError) as err:
        q.put("event", "t", b"e" * 10)
    assert err.value.reason == "quota_full"
    assert "event" in str(err.value)
    assert [q.get(i) is not None for i in alerts] == [True] * 5
