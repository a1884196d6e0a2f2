"""The durable uplink queue: what the camera still has to tell the cloud.

Ordering: by class priority (alert > event > thumbnail > telemetry > clip unless the
policy's class_priority says otherwise), oldest first within a class. An item is
deleted only by `ack`, which the drainer calls after the broker confirmed delivery
(PUBACK), so a crash anywhere before that re-sends it (at-least-once; the message id
in the payload lets the server drop the duplicate).

Quota: `quota_bytes` bounds the queued bytes (payload + topic). SQLite page overhead
comes on top; pages freed by acks and evictions are reused by later puts. The disk is
a second quota: a put also evicts when it would leave less than `min_free_bytes` free
on the queue's filesystem (clips and logs share the SD card), keeping room for the WAL
and for acks. If the disk still fills (another writer), a put fails with
UplinkError('disk_full') and the transaction rolls back: nothing queued is lost.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edge.uplink.classes import UPLINK_CLASSES, normalize_priority
from edge.uplink.db import UplinkDB
from edge.uplink.errors import UplinkError

THUMBNAIL = "thumbnail"  # the class inline thumbnail bytes are counted in


@dataclass(frozen=True)
class Item:
    id: int
    cls: str
    topic: str
    payload: bytes
    created: float
    size: int
    attempts: int


def item_size(topic: str, payload: bytes) -> int:
    """Bytes an item counts against the quota, the token bucket and the daily budget."""
    return len(payload) + len(topic.encode())


class UplinkQueue:
    """Durable, priority-ordered, quota-bounded queue on an UplinkDB."""

    def __init__(
        self,
        db: UplinkDB,
        *,
        quota_bytes: int,
        priority: Iterable[str] | None = None,
        min_free_bytes: int = 16 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if quota_bytes <= 0:
            raise ValueError("quota_bytes must be positive")
        self.db = db
        self.quota_bytes = quota_bytes
        self.min_free_bytes = min_free_bytes
        self.priority = normalize_priority(priority)
        self._clock = clock

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        quota_bytes: int,
        priority: Iterable[str] | None = None,
        min_free_bytes: int = 16 * 1024 * 1024,
    ) -> UplinkQueue:
        return cls(UplinkDB(path), quota_bytes=quota_bytes, priority=priority, min_free_bytes=min_free_bytes)

    def set_priority(self, order: Iterable[str] | None) -> None:
        """Apply a policy's class_priority to both draining and eviction order."""
        self.priority = normalize_priority(order)

    def put(self, cls: str, topic: str, payload: bytes, *, inline_bytes: int = 0) -> int:
        """Queue durably (committed and fsynced on return) and return the item id.

        When the quota would be exceeded, evicts items of the same or lower priority,
        lowest priority first and oldest first within a class. If that cannot make
        room, nothing is evicted and UplinkError('quota_full') is raised: a lower
        class never pushes out a higher one. `inline_bytes` of the payload are thumbnails
        carried inline: once delivered they count as sent in the thumbnail class.
        """
        if cls not in UPLINK_CLASSES:
            raise UplinkError("unknown_class", cls)
        payload = bytes(payload)
        size = item_size(topic, payload)
        if not 0 <= inline_bytes <= len(payload):
            raise UplinkError("bad_item", f"inline_bytes {inline_bytes} outside the payload")
        if size > self.quota_bytes:
            raise UplinkError("item_too_large", f"{size} bytes > quota {self.quota_bytes}")
        free = self._disk_free()
        with self.db.transaction() as conn:
            total = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM uplink_class").fetchone()[0]
            limit, reason = self.quota_bytes, "quota_full"
            if free is not None and total + (free - self.min_free_bytes) < limit:
                # The disk fills before the quota: evict now (new rows reuse the freed pages)
                # rather than run into ENOSPC, where even an ack cannot be written.
                limit, reason = total + max(0, free - self.min_free_bytes), "disk_full"
            need = total + size - limit
            if need > 0:
                self._evict(conn, cls, need, reason)
            cur = conn.execute(
                "INSERT INTO uplink_item (cls, topic, payload, size, created, inline_bytes) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (cls, topic, payload, size, self._clock(), inline_bytes),
            )
            return int(cur.lastrowid)

    def _disk_free(self) -> int | None:
        if not self.min_free_bytes:
            return None
        try:
            return shutil.disk_usage(Path(self.db.path).parent).free
        except OSError:
            return None

    def _evict(self, conn, incoming_cls: str, need: int, reason: str) -> None:
        rank = self.priority.index(incoming_cls)
        victims: list[tuple[int, str, int]] = []
        freed = 0
        # Lowest priority first; only classes at or below the incoming one.
        for cls in reversed(self.priority[rank:]):
            for item_id, size in conn.execute(
                "SELECT id, size FROM uplink_item WHERE cls = ? ORDER BY id", (cls,)
            ):
                victims.append((item_id, cls, size))
                freed += size
                if freed >= need:
                    break
            if freed >= need:
                break
        if freed < need:
            raise UplinkError(
                reason,
                f"{incoming_cls} item needs {need} more bytes than lower-or-equal priority items hold",
            )
        conn.executemany("DELETE FROM uplink_item WHERE id = ?", [(v[0],) for v in victims])
        conn.executemany(
            "UPDATE uplink_class SET evicted = evicted + 1, evicted_bytes = evicted_bytes + ? WHERE cls = ?",
            [(v[2], v[1]) for v in victims],
        )

    def peek_next(self, allowed_classes: Iterable[str] | None = None) -> Item | None:
        """The item to send next among `allowed_classes` (all classes when None), or None."""
        allowed = set(UPLINK_CLASSES if allowed_classes is None else allowed_classes)
        for cls in self.priority:
            if cls not in allowed:
                continue
            rows = self.db.query(
                "SELECT id, cls, topic, payload, created, size, attempts FROM uplink_item "
                "WHERE cls = ? ORDER BY id LIMIT 1",
                (cls,),
            )
            if rows:
                r = rows[0]
                return Item(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6])
        return None

    def get(self, item_id: int) -> Item | None:
        rows = self.db.query(
            "SELECT id, cls, topic, payload, created, size, attempts FROM uplink_item WHERE id = ?",
            (item_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return Item(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6])

    def mark_sent(self, item_id: int) -> None:
        """Record a delivery attempt (handed to the transport, not yet confirmed)."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE uplink_item SET attempts = attempts + 1, last_sent = ? WHERE id = ?",
                (self._clock(), item_id),
            )

    def ack(self, item_id: int) -> bool:
        """Delete after confirmed delivery; False if the item was already gone (evicted or acked)."""
        return self.db.write_freeing(lambda: self._ack(item_id))

    def _ack(self, item_id: int) -> bool:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT cls, size, inline_bytes FROM uplink_item WHERE id = ?", (item_id,)
            ).fetchone()
            if row is None:
                return False
            cls, size, inline = row
            conn.execute("DELETE FROM uplink_item WHERE id = ?", (item_id,))
            conn.execute(
                "UPDATE uplink_class SET sent = sent + 1, sent_bytes = sent_bytes + ? WHERE cls = ?",
                (size - inline, cls),
            )
            if inline:
                conn.execute(
                    "UPDATE uplink_class SET sent_bytes = sent_bytes + ? WHERE cls = ?",
                    (inline, THUMBNAIL),
                )
            return True

    def _per_class(self, column: str) -> dict[str, int]:
        rows = dict(self.db.query(f"SELECT cls, {column} FROM uplink_class"))  # noqa: S608 (fixed column)
        return {cls: int(rows.get(cls, 0)) for cls in self.priority}

    def depth_by_class(self) -> dict[str, int]:
        return self._per_class("depth")

    def bytes_by_class(self) -> dict[str, int]:
        """Queued bytes per class."""
        return self._per_class("bytes")

    def evictions_by_class(self) -> dict[str, int]:
        """Items evicted under the quota since the database was created."""
        return self._per_class("evicted")

    def sent_bytes_by_class(self) -> dict[str, int]:
        """Bytes acked (delivered) since the database was created; a monotonic counter."""
        return self._per_class("sent_bytes")

    def total_bytes(self) -> int:
        return sum(self.bytes_by_class().values())

    def __len__(self) -> int:
        return sum(self.depth_by_class().values())

    def close(self) -> None:
        self.db.close()
