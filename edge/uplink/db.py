"""The uplink database: one SQLite file holding the queue, shaping state and media upload progress.

Durability: WAL journal with synchronous=FULL. In WAL mode NORMAL already survives
a process kill -9, but it may lose the last commits on power loss because the WAL
is only fsynced at checkpoints; FULL fsyncs the WAL on every commit, so a put that
returned is on the flash before the caller sees its id. Cameras lose power far more
often than servers, and puts are a few per second at most, so the fsync is cheap
insurance.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from edge.uplink.classes import UPLINK_CLASSES
from edge.uplink.errors import UplinkError

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uplink_item (
    -- AUTOINCREMENT: an id is never reused, even after the newest item is acked.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cls TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_sent REAL,
    inline_bytes INTEGER NOT NULL DEFAULT 0
);
-- inline_bytes: bytes of the payload that belong to the thumbnail class (thumbnails inline
-- in an event report), counted as sent there; the rest counts in `cls`. Added later:
-- UplinkDB._migrate adds it to older databases.
CREATE INDEX IF NOT EXISTS uplink_item_cls_id ON uplink_item (cls, id);

-- Running totals kept by triggers in the same transaction as the row change, so the
-- quota check on every put does not scan the table.
CREATE TABLE IF NOT EXISTS uplink_class (
    cls TEXT PRIMARY KEY,
    depth INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    evicted INTEGER NOT NULL DEFAULT 0,
    evicted_bytes INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    sent_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER IF NOT EXISTS uplink_item_ins AFTER INSERT ON uplink_item BEGIN
    UPDATE uplink_class SET depth = depth + 1, bytes = bytes + NEW.size WHERE cls = NEW.cls;
END;
CREATE TRIGGER IF NOT EXISTS uplink_item_del AFTER DELETE ON uplink_item BEGIN
    UPDATE uplink_class SET depth = depth - 1, bytes = bytes - OLD.size WHERE cls = OLD.cls;
END;

CREATE TABLE IF NOT EXISTS uplink_state (
    key TEXT PRIMARY KEY,
    value
);

CREATE TABLE IF NOT EXISTS media_upload (
    upload_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    part_size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS media_part (
    upload_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
"""


def is_disk_full(exc: BaseException) -> bool:
    """True for SQLite's SQLITE_FULL and for an OSError ENOSPC."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) == sqlite3.SQLITE_FULL:
            return True
        return "database or disk is full" in str(exc)
    return False


class UplinkDB:
    """A serialized SQLite connection shared by the queue, the shaper and the media uploader.

    One lock guards the connection: the pipeline thread puts while the drain thread
    sends, and SQLite connections are not safe to share without it. `transaction()`
    is re-entrant so several writes (ack + sent-byte counters) commit with one fsync.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = 5000,
        reserve_bytes: int = 512 * 1024,
        wal_autocheckpoint_pages: int = 256,
    ) -> None:
        self.path = str(path)
        self.reserve_bytes = reserve_bytes
        self._reserve = Path(self.path + ".reserve")
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            # The WAL only shrinks back at a checkpoint; checkpoint every ~1 MiB (4 KiB pages)
            # and truncate it there, so the WAL stays well inside the queue's free-space floor.
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint_pages)}")
            self._conn.execute(f"PRAGMA journal_size_limit = {int(wal_autocheckpoint_pages) * 4096}")
            # Every statement is idempotent; executescript commits on its own.
            self._conn.executescript(_SCHEMA)
            self._migrate()
            with self.transaction():
                self._conn.executemany(
                    "INSERT OR IGNORE INTO uplink_class (cls) VALUES (?)", [(c,) for c in UPLINK_CLASSES]
                )
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc):
                raise UplinkError("disk_full", f"cannot open uplink database {self.path}: {exc}") from exc
            raise
        if not self._reserve.exists():
            self._make_reserve()

    def _migrate(self) -> None:
        """Columns added after a database was created (CREATE TABLE IF NOT EXISTS keeps old tables)."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(uplink_item)")}
        if "inline_bytes" not in columns:
            self._conn.execute("ALTER TABLE uplink_item ADD COLUMN inline_bytes INTEGER NOT NULL DEFAULT 0")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; a full disk rolls back and raises UplinkError('disk_full')."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                if is_disk_full(exc):
                    raise UplinkError(
                        "disk_full", f"uplink database {self.path}: {exc}; nothing already queued was lost"
                    ) from exc
                raise
            finally:
                self._depth = 0

    def write_freeing(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a transaction that only frees space (ack, forget).

        On a full disk, even a delete needs room in the WAL. The database keeps a reserve
        file next to it; a freeing write that hits a full disk deletes the reserve and
        tries once more, so the queue can still drain what it delivered instead of
        re-sending it forever. Puts get no such help: they fail first.
        """
        with self._lock:
            if self._depth:
                return fn()
            try:
                with self.transaction():
                    result = fn()
            except UplinkError as exc:
                if exc.reason != "disk_full" or not self.release_reserve():
                    raise
                with self.transaction():
                    result = fn()
            if not self._reserve.exists():
                self._make_reserve()
            return result

    def _make_reserve(self) -> None:
        """Best effort: only when the disk has room to spare, never failing the caller."""
        if self.reserve_bytes <= 0:
            return
        try:
            if shutil.disk_usage(self._reserve.parent).free < 4 * self.reserve_bytes:
                return
            with self._reserve.open("wb") as f:
                f.write(b"\0" * self.reserve_bytes)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                self._reserve.unlink()

    def release_reserve(self) -> bool:
        """Delete the reserve file; True if there was one to free."""
        try:
            self._reserve.unlink()
        except FileNotFoundError:
            return False
        return True

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def get_state(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM uplink_state WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_state(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO uplink_state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def integrity_check(self) -> str:
        return self.query("PRAGMA integrity_check")[0][0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> UplinkDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
