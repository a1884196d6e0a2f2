"""The drainer: moves queued items to the broker while connected, within the shaping rules."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge.uplink.errors import UplinkError
from edge.uplink.queue import Item, UplinkQueue
from edge.uplink.shaping import Shaper

log = logging.getLogger(__name__)

# Step outcomes.
SENT = "sent"
THROTTLED = "throttled"  # waiting for tokens
HELD = "held"  # items queued but none may go now (quiet hours, budget, metered, not allowed)
IDLE = "idle"  # queue empty
OFFLINE = "offline"  # send returned False
STALLED = "stalled"  # delivered, but the ack could not be written (disk full)


@dataclass(frozen=True)
class Step:
    outcome: str
    wait: float  # seconds to wait before the next step (0.0: go on)
    item: Item | None = None


class Drainer:
    """Drain `queue` through `send(item) -> bool` (True once the broker acked, False when offline).

    `step()` does one decision and returns how long to wait, so tests drive it with a
    fake clock; `run()`/`start()` loop over it in real time, sleeping on an event that
    `wake()` sets (call it after a put or on reconnect). Never busy-loops: every
    outcome except SENT carries a positive wait.
    """

    def __init__(
        self,
        queue: UplinkQueue,
        shaper: Shaper,
        send: Callable[[Item], bool],
        *,
        idle_wait: float = 30.0,
        offline_backoff: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.queue = queue
        self.shaper = shaper
        self.send = send
        self.idle_wait = idle_wait
        self._backoff_min, self._backoff_max = offline_backoff
        self._backoff = self._backoff_min
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _pick(self) -> Item | None:
        allowed = list(self.shaper.allowed_classes())
        # At most one pass per class: a class whose head does not fit the budget is skipped.
        while allowed:
            item = self.queue.peek_next(allowed)
            if item is None or self.shaper.fits_budget(item.cls, item.size):
                return item
            allowed.remove(item.cls)
        return None

    def step(self) -> Step:
        item = self._pick()
        if item is None:
            if len(self.queue):
                return Step(HELD, min(self.idle_wait, self.shaper.seconds_until_change()))
            return Step(IDLE, self.idle_wait)
        delay = self.shaper.delay_for(item.size)
        if delay > 0:
            return Step(THROTTLED, delay, item)
        try:
            self.queue.mark_sent(item.id)
        except UplinkError as exc:
            log.warning("uplink attempt count for item %s not recorded: %s", item.id, exc)  # bookkeeping only
        try:
            delivered = bool(self.send(item))
        except Exception:
            # A transport bug must not kill the drain thread; the item stays queued.
            log.exception("uplink send failed for item %s", item.id)
            delivered = False
        if not delivered:
            wait = self._backoff
            self._backoff = min(self._backoff * 2, self._backoff_max)
            return Step(OFFLINE, wait, item)
        self._backoff = self._backoff_min

        def commit() -> None:
            self.queue.ack(item.id)
            self.shaper.record_sent(item.cls, item.size)

        # Ack and budget commit together (one fsync); a crash before this re-sends the item.
        try:
            self.queue.db.write_freeing(commit)
        except UplinkError as exc:
            # Delivered but not deleted (disk full even after the reserve): wait rather than
            # re-send the same item in a tight loop on a metered link.
            log.error("uplink ack of item %s failed: %s", item.id, exc)
            return Step(STALLED, self._backoff_max, item)
        return Step(SENT, 0.0, item)

    def wake(self) -> None:
        """A new item was queued: stop waiting now."""
        self._wake.set()

    def connected(self) -> None:
        """The link is back: retry at once and restart the offline backoff."""
        self._backoff = self._backoff_min
        self._wake.set()

    def run(self) -> None:
        """Loop until stop(); for a dedicated thread."""
        while not self._stop.is_set():
            try:
                wait = self.step().wait
            except Exception:
                # A database error must not end the drain thread for good; try again later.
                log.exception("uplink drain step failed")
                wait = self._backoff_max
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="uplink-drainer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current send returns; a send in flight is not interrupted."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
