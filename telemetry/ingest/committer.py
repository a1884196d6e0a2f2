"""Where a batch is committed: in a child process (`manage.py ingest`) or in the calling thread.

paho's network work (read, decode, PUBACK) and the batch's work (decode, dedupe,
COPY) both need the interpreter; in one process they share one GIL and the ingest
reaches about 0.6x of a bare paho subscriber (bench/README.md, "Ingest"). So
`manage.py ingest` forks a committer: the parent receives and acknowledges, the
child commits, each on its own core. Batches go down a pipe in arrival order and
their results come back in the same order, so acknowledgements stay in order.

The child never acknowledges anything: if it dies, the parent starts another and
sends it the batches that had no result yet (they may have committed: their message
ids make the second commit a no-op). If the parent dies, the child sees the pipe
close and exits; the broker redelivers what was not acknowledged.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Protocol

from django.db import connections

from telemetry.ingest import metrics
from telemetry.ingest.services import dead_letter_record, ingest_batch, is_db_unavailable
from telemetry.ingest.types import BatchResult, Delivery, RawMessage
from telemetry.models.ingest import DeadLetterReason

log = logging.getLogger(__name__)

_BACKOFF_MAX_S = 10.0
_RESTART_DELAY_MAX_S = 10.0


def commit_batch(batch: list[RawMessage], stop: threading.Event) -> BatchResult | None:
    """Commit a batch, retrying while the database is down; None if stopped before it could."""
    delay, retries, started = 0.25, 0, time.perf_counter()
    while True:
        try:
            result = ingest_batch(messages=batch)
        except Exception as exc:
            if not is_db_unavailable(exc):
                log.exception("ingest batch failed; processing its %d messages one by one", len(batch))
                result = _commit_one_by_one(batch)
                result.one_by_one = True
            else:
                retries += 1
                log.warning("database unavailable, batch of %d kept unacknowledged: %s", len(batch), exc)
                for conn in connections.all():
                    conn.close()
                if stop.wait(delay):
                    return None
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
        result.db_retries, result.seconds = retries, time.perf_counter() - started
        return result


def _commit_one_by_one(batch: list[RawMessage]) -> BatchResult:
    """A batch that fails for a reason other than the database: isolate the message that causes it."""
    total = BatchResult(received=len(batch))
    for raw in batch:
        try:
            result = ingest_batch(messages=[raw])
        except Exception as exc:
            if is_db_unavailable(exc):
                raise
            log.exception("ingest failed on one message; dead-lettered")
            dead_letter_record(
                raw=raw, reason=DeadLetterReason.INTERNAL_ERROR, detail=f"{type(exc).__name__}: {exc}"
            )
            result = BatchResult(received=1, dead_letters={DeadLetterReason.INTERNAL_ERROR: 1})
        total.duplicates += result.duplicates
        total.lag_s += result.lag_s
        for kind, n in result.committed.items():
            total.committed[kind] = total.committed.get(kind, 0) + n
        for reason, n in result.dead_letters.items():
            total.dead_letters[reason] = total.dead_letters.get(reason, 0) + n
    return total


Done = tuple[list[Delivery], BatchResult | None]  # a batch and its result (None: not committed)


class Committer(Protocol):
    """What the runner needs: submit batches in arrival order, take their results in the same order."""

    @property
    def busy(self) -> bool:
        """Enough batches wait for results: take one before collecting another."""

    @property
    def pending(self) -> int:
        """Batches submitted and not yet taken."""

    def submit(self, batch: list[Delivery]) -> None: ...

    def take(self, timeout: float) -> Done | None:
        """The oldest submitted batch and its result, if ready within `timeout` seconds."""

    def finish(self) -> None:
        """Stopping: finish what was submitted, but give up waiting for an unavailable database."""

    def close(self) -> None: ...


class ThreadCommitter:
    """Commits in the calling thread (the demo's single process)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._done: deque[Done] = deque()

    busy = False  # submit() has already committed

    @property
    def pending(self) -> int:
        return len(self._done)

    def submit(self, batch: list[Delivery]) -> None:
        self._done.append((batch, commit_batch([d.raw() for d in batch], self.stop)))

    def take(self, timeout: float) -> Done | None:
        return self._done.popleft() if self._done else None

    def finish(self) -> None:
        pass

    def close(self) -> None:
        self._done.clear()


class ProcessCommitter:
    """Commits in a forked child process, up to `depth` batches ahead of their acknowledgement."""

    def __init__(self, stop: threading.Event, depth: int = 2) -> None:
        self.stop = stop
        self.depth = depth
        self._pending: deque[list[Delivery]] = deque()  # sent, no result yet, in order
        self._stop_child = multiprocessing.get_context("fork").Event()
        self._pipe: Connection | None = None
        self._child: multiprocessing.process.BaseProcess | None = None
        self._restart_delay = 0.25
        self._start_child()

    @property
    def busy(self) -> bool:
        return len(self._pending) >= self.depth

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, batch: list[Delivery]) -> None:
        self._pending.append(batch)
        self._send(batch)

    def take(self, timeout: float) -> Done | None:
        if not self._pending:
            return None
        try:
            if not self._pipe.poll(timeout):
                return None
            result = self._pipe.recv()  # a pipe between this process and its own child
        except (EOFError, OSError):
            if not self._restart():
                return self._pending.popleft(), None  # stopping with a dead child: not committed
            return None
        self._restart_delay = 0.25
        return self._pending.popleft(), result

    def finish(self) -> None:
        self._stop_child.set()  # read only by the child's wait for an unavailable database

    def close(self) -> None:
        self._stop_child.set()
        if self._pipe is not None:
            self._pipe.close()
        if self._child is not None:
            self._child.join(30)
            if self._child.is_alive():
                self._child.kill()
                self._child.join(5)

    # -- the child ------------------------------------------------------------------------------

    def _start_child(self) -> None:
        # The child inherits this thread's database connections: close them, so that the two
        # processes never talk on one socket.
        connections.close_all()
        parent_end, child_end = multiprocessing.Pipe()
        child = multiprocessing.get_context("fork").Process(
            target=_child_main,
            args=(child_end, parent_end, self._stop_child, os.getpid()),
            name="fleet-ingest-commit",
            daemon=True,
        )
        child.start()
        child_end.close()
        self._pipe, self._child = parent_end, child
        metrics.COMMITTER_STARTS.inc()

    def _send(self, batch: list[Delivery]) -> None:
        try:
            self._pipe.send(_wire(batch))
        except OSError:
            self._restart()  # sends every pending batch, this one included

    def _restart(self) -> bool:
        """The child died: start another and send it every batch that has no result yet, in order.

        False when stopping instead: what had no result stays unacknowledged, the broker keeps it."""
        while True:
            code = self._child.exitcode if self._child is not None else None
            log.error("ingest committer process ended (exit code %s); restarting it", code)
            self._pipe.close()
            if self._child is not None:
                self._child.join(5)
            if self.stop.wait(self._restart_delay):
                return False
            self._restart_delay = min(self._restart_delay * 2, _RESTART_DELAY_MAX_S)
            self._start_child()
            try:
                for batch in self._pending:  # each exactly once, or results would pair with the wrong batch
                    self._pipe.send(_wire(batch))
            except OSError:
                continue
            return True


def _wire(batch: list[Delivery]) -> list[tuple[str, bytes, float]]:
    # Only what committing needs, as plain tuples: the child unpickles them in C, where
    # rebuilding each namedtuple cost it a Python call per message.
    return [(d.topic, d.payload, d.received_ts) for d in batch]


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _child_main(
    pipe: Connection, parent_end: Connection, stop: multiprocessing.synchronize.Event, parent_pid: int
) -> None:
    parent_end.close()  # else the parent closing its end would not end this one's recv
    # The parent decides when to stop (it finishes and acknowledges the current batch first).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stopped = _ParentGone(stop, parent_pid)
    while True:
        try:
            batch = pipe.recv()
        except EOFError:
            break
        result = commit_batch([RawMessage(t, p, _utc(ts)) for t, p, ts in batch], stopped)
        try:
            pipe.send(result)
        except OSError:
            break
    connections.close_all()


class _ParentGone:
    """The stop signal of the child's retry loop: the parent asked, or the parent is gone."""

    def __init__(self, stop: multiprocessing.synchronize.Event, parent_pid: int) -> None:
        self._stop, self._parent_pid = stop, parent_pid

    def wait(self, timeout: float) -> bool:
        return self._stop.wait(timeout) or os.getppid() != self._parent_pid
