"""Bandwidth shaping: token bucket, daily byte budget, quiet hours, metered links.

Policy decisions (what an operator of a metered camera fleet expects):
- Every byte delivered counts against the daily budget, alerts included: the carrier
  bills them all. Alerts bypass the budget and quiet hours, though: a missed
  intrusion costs more than a few kilobytes of overage.
- Other classes are held (not dropped) once the budget is spent; they wait for local
  midnight, subject to the disk quota. An item is sent only if it fits in what is
  left, but a big item does not block smaller items of other classes.
- Quiet hours: only alerts. Metered link: clips are held (they are the bulk bytes).
- daily_budget_mb is MiB per local calendar day (protocol.down.BandwidthPolicy); null = no
  budget, 0 = alerts only.
- The token bucket meters item bytes (payload + topic); MQTT/TLS framing is extra.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from edge.uplink.classes import UPLINK_CLASSES, normalize_priority
from edge.uplink.db import UplinkDB

ALERT = "alert"
HELD_ON_METERED: frozenset[str] = frozenset({"clip"})


def _parse_hhmm(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


@dataclass(frozen=True)
class BandwidthPolicy:
    """The device side of config["bandwidth"] from down/config."""

    max_kbps: float | None = None
    daily_budget_mb: float | None = None
    classes_allowed: tuple[str, ...] = UPLINK_CLASSES
    class_priority: tuple[str, ...] = UPLINK_CLASSES
    quiet_hours: tuple[dt.time, dt.time] | None = None
    metered: bool = False
    burst_bytes: int | None = field(default=None)

    @classmethod
    def from_config(cls, bandwidth: Mapping[str, Any] | msgspec.Struct | None) -> BandwidthPolicy:
        """Build from config["bandwidth"] (a dict or protocol's BandwidthPolicy); missing keys: no limit."""
        if isinstance(bandwidth, msgspec.Struct):
            bandwidth = msgspec.structs.asdict(bandwidth)
        b = dict(bandwidth or {})
        allowed = b.get("classes_allowed")
        for name in allowed or ():
            if name not in UPLINK_CLASSES:
                raise ValueError(f"unknown uplink class {name!r} in classes_allowed")
        quiet = b.get("quiet_hours")
        return cls(
            max_kbps=float(b["max_kbps"]) if b.get("max_kbps") else None,
            daily_budget_mb=None if b.get("daily_budget_mb") is None else float(b["daily_budget_mb"]),
            classes_allowed=tuple(allowed) if allowed is not None else UPLINK_CLASSES,
            class_priority=normalize_priority(b.get("class_priority")),
            quiet_hours=(_parse_hhmm(quiet[0]), _parse_hhmm(quiet[1])) if quiet else None,
            metered=bool(b.get("metered", False)),
        )

    @property
    def rate_bytes_per_s(self) -> float | None:
        return self.max_kbps * 1000 / 8 if self.max_kbps else None

    @property
    def budget_bytes(self) -> int | None:
        return None if self.daily_budget_mb is None else int(self.daily_budget_mb * 1024 * 1024)


class TokenBucket:
    """Bytes per second with a burst; `clock` is injectable so tests advance time by hand.

    An item larger than the burst is let through once the bucket is full and leaves it
    in debt, so the long-run rate still holds and no item is stuck forever.
    """

    def __init__(self, *, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def delay_for(self, nbytes: int) -> float:
        """Seconds until `nbytes` may go; 0.0 means now."""
        self._refill()
        needed = min(nbytes, self.burst)
        # Tolerate float dust, and never ask for a wait so short that the caller spins.
        if self._tokens >= needed - 1e-6:
            return 0.0
        return max(0.001, (needed - self._tokens) / self.rate)

    def consume(self, nbytes: int) -> None:
        self._refill()
        self._tokens -= nbytes


def local_now() -> dt.datetime:
    return dt.datetime.now().astimezone()


class Shaper:
    """Decides which classes may go now and when the next byte may go."""

    def __init__(
        self,
        db: UplinkDB,
        *,
        policy: BandwidthPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = local_now,
    ) -> None:
        self.db = db
        self._clock = clock
        self._now = now
        self.policy = BandwidthPolicy()
        self._bucket: TokenBucket | None = None
        self.set_policy(policy or BandwidthPolicy())

    def set_policy(self, policy: BandwidthPolicy) -> None:
        self.policy = policy
        rate = policy.rate_bytes_per_s
        if rate is None:
            self._bucket = None
        else:
            # One second of traffic, but at least 4 KiB so a small link can still move a thumbnail chunk.
            burst = policy.burst_bytes or max(rate, 4096)
            self._bucket = TokenBucket(rate=rate, burst=burst, clock=self._clock)

    # -- daily budget, persisted so a reboot does not hand out a fresh one -------------

    def _today(self) -> str:
        return self._now().date().isoformat()

    def budget_used(self) -> int:
        if self.db.get_state("budget_day") != self._today():
            return 0
        return int(self.db.get_state("budget_used", 0))

    def budget_remaining(self) -> int | None:
        total = self.policy.budget_bytes
        return None if total is None else max(0, total - self.budget_used())

    def fits_budget(self, cls: str, nbytes: int) -> bool:
        if cls == ALERT:
            return True
        remaining = self.budget_remaining()
        return remaining is None or nbytes <= remaining

    def record_sent(self, cls: str, nbytes: int) -> None:
        """Count delivered bytes against the bucket and today's budget."""
        if self._bucket is not None:
            self._bucket.consume(nbytes)
        today = self._today()
        with self.db.transaction():
            used = self.budget_used()
            self.db.set_state("budget_day", today)
            self.db.set_state("budget_used", used + nbytes)

    # -- what may go now ---------------------------------------------------------------

    def in_quiet_hours(self) -> bool:
        if self.policy.quiet_hours is None:
            return False
        start, end = self.policy.quiet_hours
        t = self._now().time()
        if start == end:
            return False
        if start < end:
            return start <= t < end
        return t >= start or t < end  # wraps midnight, e.g. 22:00-06:00

    def allowed_classes(self) -> tuple[str, ...]:
        """Classes that may be sent now, in priority order (budget fit is per item)."""
        quiet = self.in_quiet_hours()
        spent = self.budget_remaining() == 0
        out = []
        for cls in self.policy.class_priority:
            if cls not in self.policy.classes_allowed:
                continue
            if cls != ALERT and quiet:
                continue
            if self.policy.metered and cls in HELD_ON_METERED:
                continue
            if cls != ALERT and spent:
                continue
            out.append(cls)
        return tuple(out)

    def delay_for(self, nbytes: int) -> float:
        return 0.0 if self._bucket is None else self._bucket.delay_for(nbytes)

    def seconds_until_change(self) -> float:
        """Seconds until quiet hours end or the budget resets, whichever is sooner."""
        now = self._now()
        midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(0), tzinfo=now.tzinfo)
        candidates = [(midnight - now).total_seconds()]
        if self.policy.quiet_hours is not None:
            for edge in self.policy.quiet_hours:
                at = dt.datetime.combine(now.date(), edge, tzinfo=now.tzinfo)
                if at <= now:
                    at += dt.timedelta(days=1)
                candidates.append((at - now).total_seconds())
        return max(0.001, math.ceil(min(candidates) * 1000) / 1000)

    def status(self) -> dict[str, Any]:
        """Budget state for telemetry."""
        return {
            "budget_used_bytes": self.budget_used(),
            "budget_remaining_bytes": self.budget_remaining(),
            "quiet": self.in_quiet_hours(),
            "metered": self.policy.metered,
        }
