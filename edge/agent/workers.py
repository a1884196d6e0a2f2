"""Small helpers: a serial job thread and an in-memory log ring for request_logs."""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Worker:
    """Runs jobs one at a time on its own thread, so the MQTT network thread never blocks."""

    def __init__(self, name: str, maxsize: int = 1000) -> None:
        self.name = name
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name=f"agent-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> bool:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            log.error("%s worker is full; job dropped", self.name)
            return False
        return True

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("%s job failed", self.name)

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)


class LogRing(logging.Handler):
    """Keeps the last `capacity` formatted log lines for the request_logs command."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)

    def tail(self, n: int, *, max_bytes: int) -> list[str]:
        """The last `n` lines, newest kept, trimmed to fit `max_bytes` of UTF-8."""
        out: list[str] = []
        size = 0
        for line in reversed(list(self.lines)[-n:]):
            size += len(line.encode()) + 4
            if size > max_bytes:
                break
            out.append(line)
        out.reverse()
        return out
