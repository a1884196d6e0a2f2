"""Shaping and draining on a fake clock: offline backlog, rate, budget, quiet hours, metered links."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from edge.uplink import BandwidthPolicy, Drainer, Shaper, TokenBucket, UplinkQueue
from edge.uplink.drain import HELD, IDLE, OFFLINE, SENT, THROTTLED

TZ = dt.timezone(dt.timedelta(hours=2))  # "local" time of the camera in these tests


class FakeTime:
    def __init__(self, start: dt.datetime) -> None:
        self.t = 0.0
        self.start = start

    def monotonic(self) -> float:
        return self.t

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Link:
    """send(): records (fake time, item) when online, returns False when offline."""

    def __init__(self, clock: FakeTime) -> None:
        self.online = False
        self.clock = clock
        self.delivered: list[tuple[float, object]] = []

    def send(self, item) -> bool:
        if not self.online:
            return False
        self.delivered.append((self.clock.t, item))
        return True


@pytest.fixture
def clock():
    return FakeTime(dt.datetime(2026, 3, 10, 12, 0, tzinfo=TZ))


def make(tmp_path, clock, bandwidth: dict, quota: int = 10**8):
    q = UplinkQueue.open(tmp_path / "uplink.db", quota_bytes=quota)
    shaper = Shaper(q.db, policy=BandwidthPolicy.from_config(bandwidth), clock=clock.monotonic, now=clock.now)
    link = Link(clock)
    return q, shaper, link, Drainer(q, shaper, link.send, idle_wait=3600)


def run_fake(drainer: Drainer, clock: FakeTime, *, until: float, max_steps: int = 100_000) -> list:
    """Step the drainer, advancing fake time by each wait, until fake time `until`, idle or held."""
    steps = []
    for _ in range(max_steps):
        step = drainer.step()
        steps.append(step)
        if step.outcome in (IDLE, HELD) or clock.t >= until:
            return steps
        assert step.wait > 0 or step.outcome == SENT, step  # never a busy loop
        clock.advance(step.wait)
    raise AssertionError("drainer did not settle")


def test_offline_backlog_arrives_in_priority_order_within_rate(tmp_path, clock):
    q, shaper, link, drainer = make(tmp_path, clock, {"max_kbps": 64})  # 8000 B/s
    rate, burst = 8000, shaper._bucket.burst
    classes = ["clip", "telemetry", "alert", "thumbnail", "event"]
    for n in range(100):
        q.put(classes[n % 5], "t", bytes([n]) * (200 + 37 * (n % 11)))
    for _ in range(5):  # offline: nothing leaves, backoff grows
        step = drainer.step()
        assert step.outcome == OFFLINE
        clock.advance(step.wait)
    assert step.wait == 16.0 and len(q) == 100 and not link.delivered

    link.online = True
    drainer.connected()
    start = clock.t
    run_fake(drainer, clock, until=start + 3600)
    assert len(q) == 0 and len(link.delivered) == 100
    ranks = [q.priority.index(item.cls) for _, item in link.delivered]
    assert ranks == sorted(ranks)
    ids = [item.id for _, item in link.delivered]
    for cls in classes:  # FIFO inside each class
        cls_ids = [i for (_, it), i in zip(link.delivered, ids, strict=True) if it.cls == cls]
        assert cls_ids == sorted(cls_ids)

    # Token bucket: any window of T seconds carries at most burst + rate * T bytes...
    times = [t for t, _ in link.delivered]
    sizes = [item.size for _, item in link.delivered]
    for i in range(len(times)):
        total = 0
        for j in range(i, len(times)):
            total += sizes[j]
            assert total <= burst + rate * (times[j] - times[i]) + 1e-6
    # ...every fake second after the first burst stays under the rate (plus one item in flight)...
    per_second: dict[int, int] = {}
    for t, size in zip(times, sizes, strict=True):
        per_second[int(t - start)] = per_second.get(int(t - start), 0) + size
    assert max(v for s, v in per_second.items() if s >= 1) <= rate + max(sizes)
    # ...and the whole backlog took as long as the rate says.
    expected = (sum(sizes) - burst) / rate
    assert expected - 1 <= times[-1] - start <= expected + 1


def test_token_bucket_lets_a_big_item_through_in_debt():
    now = [0.0]
    bucket = TokenBucket(rate=1000, burst=500, clock=lambda: now[0])
    assert bucket.delay_for(2000) == 0.0  # full bucket: the item goes...
    bucket.consume(2000)
    assert bucket.delay_for(100) == pytest.approx(1.6)  # ...and the debt is paid back at the rate
    now[0] = 1.6
    assert bucket.delay_for(100) == 0.0


def test_daily_budget_holds_all_but_alerts_and_resets_at_local_midnight(tmp_path, clock):
    budget_mib = 0.01  # 10485 bytes
    q, shaper, link, drainer = make(tmp_path, clock, {"max_kbps": 10_000, "daily_budget_mb": budget_mib})
    drainer.idle_wait = 86_400
    link.online = True
    clock.advance(11 * 3600 - 60)  # 22:59 local
    for _ in range(30):
        q.put("event", "t", b"e" * 999)  # 1000 bytes with the topic
    steps = run_fake(drainer, clock, until=clock.t + 30)
    assert steps[-1].outcome == HELD
    assert len(link.delivered) == 10 and shaper.budget_remaining() == 485
    # Alerts still go (and are counted), other classes wait.
    q.put("alert", "t", b"a" * 999)
    assert drainer.step().outcome == SENT
    assert link.delivered[-1][1].cls == "alert"
    assert shaper.budget_used() == 11_000 and shaper.budget_remaining() == 0
    held = drainer.step()
    assert held.outcome == HELD and held.wait == pytest.approx(3660, abs=1)  # sleeps until midnight

    # The spent budget survives a restart of the agent.
    shaper2 = Shaper(q.db, policy=shaper.policy, clock=clock.monotonic, now=clock.now)
    assert shaper2.budget_used() == 11_000

    clock.advance(held.wait)  # 00:00 next day
    assert clock.now().date() == dt.date(2026, 3, 11)
    steps = run_fake(drainer, clock, until=clock.t + 3600)
    assert len(link.delivered) == 21 and len(q) == 10


def test_item_bigger_than_remaining_budget_does_not_block_smaller_classes(tmp_path, clock):
    q, _shaper, link, drainer = make(tmp_path, clock, {"daily_budget_mb": 0.001})  # 1048 bytes
    link.online = True
    q.put("thumbnail", "t", b"x" * 2000)
    q.put("telemetry", "t", b"x" * 100)
    run_fake(drainer, clock, until=60)
    assert [item.cls for _, item in link.delivered] == ["telemetry"]
    assert q.depth_by_class()["thumbnail"] == 1


def test_quiet_hours_only_alerts(tmp_path, clock):
    q, shaper, link, drainer = make(tmp_path, clock, {"quiet_hours": ["22:00", "06:00"]})
    link.online = True
    clock.advance(11 * 3600)  # 23:00
    assert shaper.in_quiet_hours()
    q.put("event", "t", b"e")
    q.put("alert", "t", b"a")
    q.put("telemetry", "t", b"m")
    assert drainer.step().item.cls == "alert"
    held = drainer.step()
    assert held.outcome == HELD
    assert held.wait == pytest.approx(3600)  # idle_wait caps the 7 h until 06:00
    clock.advance(7 * 3600)  # 06:00
    run_fake(drainer, clock, until=clock.t + 10)
    assert [item.cls for _, item in link.delivered] == ["alert", "event", "telemetry"]


def test_metered_link_holds_clips_and_classes_allowed_is_respected(tmp_path, clock):
    q, shaper, link, drainer = make(
        tmp_path, clock, {"metered": True, "classes_allowed": ["alert", "event", "clip", "thumbnail"]}
    )
    link.online = True
    for cls in ("clip", "telemetry", "event", "thumbnail"):
        q.put(cls, "t", cls.encode())
    assert shaper.allowed_classes() == ("alert", "event", "thumbnail")
    run_fake(drainer, clock, until=10)
    assert [item.cls for _, item in link.delivered] == ["event", "thumbnail"]
    assert q.depth_by_class()["clip"] == 1 and q.depth_by_class()["telemetry"] == 1
    shaper.set_policy(BandwidthPolicy.from_config({"metered": False}))
    run_fake(drainer, clock, until=20)
    assert [item.cls for _, item in link.delivered][2:] == ["telemetry", "clip"]


def test_policy_from_protocol_config():
    import msgspec

    from protocol.down import BandwidthPolicy as WirePolicy

    wire = msgspec.convert(
        {
            "max_kbps": 256,
            "daily_budget_mb": 50,
            "class_priority": ["event"],
            "quiet_hours": ["22:00", "06:30"],
        },
        WirePolicy,
    )
    policy = BandwidthPolicy.from_config(wire)
    assert policy.rate_bytes_per_s == 32_000
    assert policy.budget_bytes == 50 * 1024 * 1024
    assert policy.class_priority[:2] == ("event", "alert")
    assert policy.quiet_hours == (dt.time(22, 0), dt.time(6, 30))


def test_send_exception_keeps_item_and_backs_off(tmp_path, clock):
    q, shaper, _, _ = make(tmp_path, clock, {})

    def broken(item):
        raise RuntimeError("transport bug")

    drainer = Drainer(q, shaper, broken)
    q.put("alert", "t", b"a")
    step = drainer.step()
    assert step.outcome == OFFLINE and step.wait > 0 and len(q) == 1


def test_throttled_step_waits_for_tokens(tmp_path, clock):
    q, _shaper, link, drainer = make(tmp_path, clock, {"max_kbps": 64})
    link.online = True
    for _ in range(3):
        q.put("event", "t", b"x" * 4999)  # 5000 bytes each, burst is 8000
    assert drainer.step().outcome == SENT
    step = drainer.step()
    assert step.outcome == THROTTLED and step.wait == pytest.approx(2000 / 8000)


def test_threaded_run_drains_wakes_and_stops_without_spinning(tmp_path):
    q = UplinkQueue.open(tmp_path / "uplink.db", quota_bytes=10**8)
    shaper = Shaper(q.db, policy=BandwidthPolicy.from_config({"max_kbps": 800}))
    got: list[int] = []
    calls = {"step": 0}
    online = threading.Event()

    def send(item):
        if not online.is_set():
            return False
        got.append(item.id)
        return True

    drainer = Drainer(q, shaper, send, idle_wait=30, offline_backoff=(0.05, 0.2))
    real_step = drainer.step

    def counted_step():
        calls["step"] += 1
        return real_step()

    drainer.step = counted_step
    drainer.start()
    ids = [q.put("event", "t", b"x" * 1000) for _ in range(20)]
    drainer.wake()
    time.sleep(0.5)
    assert got == [] and calls["step"] <= 15  # offline: backoff, not a spin
    online.set()
    drainer.connected()
    deadline = time.monotonic() + 5
    while len(got) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got == ids
    before = calls["step"]
    time.sleep(0.3)
    assert calls["step"] - before <= 1  # idle: asleep on the wake event
    t0 = time.monotonic()
    drainer.stop()
    assert time.monotonic() - t0 < 1
    assert drainer._thread is None


def test_ack_failing_on_full_disk_stalls_instead_of_resending_in_a_loop(tmp_path, clock, monkeypatch):
    from edge.uplink import UplinkError
    from edge.uplink.drain import STALLED

    q, _shaper, link, drainer = make(tmp_path, clock, {})
    link.online = True
    q.put("event", "t", b"e")

    def full(item_id):
        raise UplinkError("disk_full", "test")

    monkeypatch.setattr(q, "ack", full)
    step = drainer.step()
    assert step.outcome == STALLED and step.wait == 30.0
    assert len(link.delivered) == 1 and len(q) == 1  # delivered once, kept for at-least-once
