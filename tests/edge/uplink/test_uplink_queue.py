"""The durable uplink queue: order, quota eviction, persistence."""

from __future__ import annotations

import pytest

from edge.uplink import UPLINK_CLASSES, UplinkDB, UplinkError, UplinkQueue
from edge.uplink.queue import item_size

TOPIC = "fleet/v1/devices/cam-1/up/events"


@pytest.fixture
def qpath(tmp_path):
    return tmp_path / "uplink.db"


def drain_order(q: UplinkQueue) -> list[tuple[str, bytes]]:
    out = []
    for _ in range(10_000):
        item = q.peek_next()
        if item is None:
            return out
        out.append((item.cls, item.payload))
        assert q.ack(item.id)
    raise AssertionError("queue did not empty")


def test_priority_classes_match_protocol():
    from protocol.vocab import UPLINK_CLASSES as protocol_classes

    assert UPLINK_CLASSES == protocol_classes == ("alert", "event", "thumbnail", "telemetry", "clip")


def test_highest_priority_first_and_fifo_within_class(qpath):
    q = UplinkQueue.open(qpath, quota_bytes=10**6)
    puts = [("clip", b"c1"), ("telemetry", b"t1"), ("alert", b"a1"), ("event", b"e1"), ("clip", b"c2")]
    puts += [("alert", b"a2"), ("thumbnail", b"th1"), ("event", b"e2"), ("telemetry", b"t2")]
    for cls, payload in puts:
        q.put(cls, TOPIC, payload)
    assert drain_order(q) == [
        ("alert", b"a1"),
        ("alert", b"a2"),
        ("event", b"e1"),
        ("event", b"e2"),
        ("thumbnail", b"th1"),
        ("telemetry", b"t1"),
        ("telemetry", b"t2"),
        ("clip", b"c1"),
        ("clip", b"c2"),
    ]


def test_peek_next_only_offers_allowed_classes(qpath):
    q = UplinkQueue.open(qpath, quota_bytes=10**6)
    q.put("alert", TOPIC, b"a")
    q.put("clip", TOPIC, b"c")
    assert q.peek_next(["clip", "telemetry"]).payload == b"c"
    assert q.peek_next(["telemetry"]) is None
    assert q.peek_next([]) is None


def test_policy_priority_reorders_drain(qpath):
    q = UplinkQueue.open(qpath, quota_bytes=10**6, priority=["telemetry"])
    q.put("alert", TOPIC, b"a")
    q.put("telemetry", TOPIC, b"t")
    assert q.priority == ("telemetry", "alert", "event", "thumbnail", "clip")
    assert [c for c, _ in drain_order(q)] == ["telemetry", "alert"]


def test_counters_by_class(qpath):
    q = UplinkQueue.open(qpath, quota_bytes=10**6)
    a = q.put("alert", TOPIC, b"x" * 10)
    q.put("clip", TOPIC, b"y" * 100)
    q.put("clip", TOPIC, b"y" * 50)
    assert q.depth_by_class() == {"alert": 1, "event": 0, "thumbnail": 0, "telemetry": 0, "clip": 2}
    assert q.bytes_by_class()["clip"] == 150 + 2 * len(TOPIC)
    q.mark_sent(a)
    assert q.get(a).attempts == 1
    assert q.ack(a)
    assert not q.ack(a)
    assert q.sent_bytes_by_class()["alert"] == 10 + len(TOPIC)
    assert q.depth_by_class()["alert"] == 0
    assert len(q) == 2


def test_quota_evicts_lowest_priority_oldest_first(qpath):
    size = item_size(TOPIC, b"x" * 100)
    q = UplinkQueue.open(qpath, quota_bytes=size * 6)
    ids = {}
    for name, cls in [
        ("c1", "clip"),
        ("t1", "telemetry"),
        ("c2", "clip"),
        ("e1", "event"),
        ("t2", "telemetry"),
    ]:
        ids[name] = q.put(cls, TOPIC, b"x" * 100)
    ids["a1"] = q.put("alert", TOPIC, b"x" * 100)  # exactly full, nothing evicted
    assert len(q) == 6
    q.put("event", TOPIC, b"x" * 100)  # evicts the oldest clip
    assert q.get(ids["c1"]) is None and q.get(ids["c2"]) is not None
    q.put("alert", TOPIC, b"x" * 100)  # then the other clip
    assert q.get(ids["c2"]) is None
    q.put("thumbnail", TOPIC, b"x" * 100)  # clips gone: the oldest telemetry
    assert q.get(ids["t1"]) is None and q.get(ids["t2"]) is not None
    assert q.evictions_by_class() == {"alert": 0, "event": 0, "thumbnail": 0, "telemetry": 1, "clip": 2}
    assert q.total_bytes() <= q.quota_bytes


def test_lower_priority_item_is_refused_rather_than_evicting_higher(qpath):
    size = item_size(TOPIC, b"x" * 100)
    q = UplinkQueue.open(qpath, quota_bytes=size * 3)
    kept = [
        q.put("alert", TOPIC, b"x" * 100),
        q.put("event", TOPIC, b"x" * 100),
        q.put("alert", TOPIC, b"x" * 100),
    ]
    with pytest.raises(UplinkError) as err:
        q.put("clip", TOPIC, b"x" * 100)
    assert err.value.reason == "quota_full"
    with pytest.raises(UplinkError):
        q.put("thumbnail", TOPIC, b"x" * 100)
    assert all(q.get(i) is not None for i in kept)
    assert sum(q.evictions_by_class().values()) == 0
    # An event may push out the older event (same class, oldest first) but no alert.
    q.put("event", TOPIC, b"y" * 100)
    assert q.get(kept[1]) is None and q.get(kept[0]) is not None and q.get(kept[2]) is not None


def test_alert_evicted_only_when_nothing_lower_is_left(qpath):
    size = item_size(TOPIC, b"x" * 100)
    q = UplinkQueue.open(qpath, quota_bytes=size * 3)
    a1 = q.put("alert", TOPIC, b"x" * 100)
    clip = q.put("clip", TOPIC, b"x" * 100)
    a2 = q.put("alert", TOPIC, b"x" * 100)
    a3 = q.put("alert", TOPIC, b"x" * 100)
    assert q.get(clip) is None and q.get(a1) is not None
    a4 = q.put("alert", TOPIC, b"x" * 100)
    assert q.get(a1) is None
    assert [q.get(i) is not None for i in (a2, a3, a4)] == [True, True, True]
    assert q.evictions_by_class()["alert"] == 1


def test_one_put_evicts_several_smaller_items_or_none(qpath):
    q = UplinkQueue.open(qpath, quota_bytes=1000)
    small = [q.put("clip", "t", b"x" * 99) for _ in range(10)]  # 100 bytes each: full
    big = q.put("event", "t", b"y" * 349)  # 350 bytes: evicts the 4 oldest clips
    assert [q.get(i) is None for i in small] == [True] * 4 + [False] * 6
    assert q.get(big) is not None
    with pytest.raises(UplinkError) as err:
        q.put("alert", "t", b"z" * 1001)
    assert err.value.reason == "item_too_large"
    with pytest.raises(UplinkError) as err:
        q.put("video", "t", b"z")
    assert err.value.reason == "unknown_class"


def test_nothing_lost_across_reopen(qpath):
    q = UplinkQueue.open(qpath, quota_bytes=10**6)
    ids = [q.put(UPLINK_CLASSES[i % 5], TOPIC, f"p{i}".encode()) for i in range(50)]
    acked = ids[::7]
    for i in acked:
        q.ack(i)
    before = drain_snapshot(q)
    q.close()
    q2 = UplinkQueue.open(qpath, quota_bytes=10**6)
    assert drain_snapshot(q2) == before
    assert {i for i, *_ in before} == set(ids) - set(acked)
    # Ids are never reused after the newest item is acked.
    q2.ack(ids[-1])
    assert q2.put("alert", TOPIC, b"new") > ids[-1]
    assert q2.db.integrity_check() == "ok"


def drain_snapshot(q: UplinkQueue):
    rows = q.db.query("SELECT id, cls, topic, payload, size FROM uplink_item ORDER BY id")
    return [(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]


def test_database_is_wal_and_fsyncs_every_commit(qpath):
    db = UplinkDB(qpath)
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    assert db.query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_inline_thumbnail_bytes_count_as_sent_in_the_thumbnail_class(qpath):
    q = UplinkQueue.open(qpath, quota_bytes=10**6)
    payload = b"e" * 100 + b"T" * 900  # an end report carrying a 900-character inline thumbnail
    item = q.put("event", TOPIC, payload, inline_bytes=900)
    assert q.depth_by_class()["event"] == 1 and q.bytes_by_class()["event"] == item_size(TOPIC, payload)
    assert q.ack(item)
    sent = q.sent_bytes_by_class()
    assert sent["event"] == item_size(TOPIC, payload) - 900 and sent["thumbnail"] == 900
    with pytest.raises(UplinkError) as err:
        q.put("event", TOPIC, b"xy", inline_bytes=3)
    assert err.value.reason == "bad_item"


def test_a_database_from_before_inline_bytes_is_migrated_in_place(qpath):
    import sqlite3

    q = UplinkQueue.open(qpath, quota_bytes=10**6)
    q.put("event", TOPIC, b"ee")
    q.close()
    old = sqlite3.connect(qpath)  # the table as an older agent created it
    old.execute("ALTER TABLE uplink_item DROP COLUMN inline_bytes")
    old.commit()
    old.close()
    q = UplinkQueue.open(qpath, quota_bytes=10**6)
    item = q.peek_next()
    assert item is not None and item.payload == b"ee"
    assert q.ack(item.id) and q.sent_bytes_by_class()["event"] == item_size(TOPIC, b"ee")
    q.ack(q.put("event", TOPIC, b"abc", inline_bytes=1))
    assert q.sent_bytes_by_class()["thumbnail"] == 1
