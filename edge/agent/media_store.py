"""Snapshot and clip bytes waiting for an upload grant, one file per request.

Files are named `<request_id>.<kind>.<ext>`, so a grant (which names only the request id)
finds its file again after a restart. Bounded by `quota_bytes`: the oldest files go first,
as the uplink queue evicts its oldest low-priority items.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edge.agent.identity import write_atomic
from protocol.messages import new_message_id

log = logging.getLogger(__name__)

_EXT = {"image/jpeg": "jpg", "video/mp4": "mp4"}


@dataclass(frozen=True)
class StoredMedia:
    request_id: str
    kind: str  # snapshot | clip
    path: Path
    size: int
    sha256: str
    content_type: str


class MediaStore:
    def __init__(self, directory: str | os.PathLike[str], *, quota_bytes: int = 256 * 1024 * 1024) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes

    def save(self, kind: str, data: bytes, content_type: str) -> StoredMedia:
        request_id = new_message_id()
        path = self.dir / f"{request_id}.{kind}.{_EXT.get(content_type, 'bin')}"
        write_atomic(path, data, mode=0o600)
        self._enforce_quota(keep=path)
        return StoredMedia(request_id, kind, path, len(data), hashlib.sha256(data).hexdigest(), content_type)

    def find(self, request_id: str) -> tuple[str, Path] | None:
        """(kind, path) of the file waiting for `request_id`, or None."""
        for path in self.dir.glob(f"{request_id}.*"):
            parts = path.name.split(".")
            if len(parts) == 3 and parts[0] == request_id:
                return parts[1], path
        return None

    def remove(self, request_id: str) -> None:
        found = self.find(request_id)
        if found is not None:
            found[1].unlink(missing_ok=True)

    def _enforce_quota(self, keep: Path) -> None:
        files = sorted((p for p in self.dir.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.quota_bytes:
                break
            if p == keep:
                continue
            total -= p.stat().st_size
            p.unlink(missing_ok=True)
            log.warning("media quota: dropped %s", p.name)
