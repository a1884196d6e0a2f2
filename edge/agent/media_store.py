"""Snapshot and clip bytes on the device: waiting for an upload grant, or kept for an operator to ask.

    <dir>/<request_id>.<kind>.<ext>             waiting for a grant (sent on its own)
    <dir>/requested/<request_id>.<kind>.<ext>   waiting for a grant, asked for by a command
    <dir>/kept/<event_id>.<kind>.<ext>          kept, not uploaded unless a command asks

A grant names only the request id, so the file is found again after a restart by its name.
Bounded by `quota_bytes`: kept files go first (nobody is waiting for them), then the
oldest waiting ones, as the uplink queue evicts its oldest low-priority items.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge.agent.identity import write_atomic
from protocol.messages import new_message_id

log = logging.getLogger(__name__)

_EXT = {"image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}
_TYPES = {ext: ctype for ctype, ext in _EXT.items()}
REQUESTED, KEPT = "requested", "kept"


@dataclass(frozen=True)
class StoredMedia:
    request_id: str
    kind: str  # snapshot | clip
    path: Path
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True)
class Pending:
    """A file waiting for the grant of one request."""

    kind: str
    path: Path
    requested: bool  # asked for by an operator command (upload_clip)


class MediaStore:
    def __init__(self, directory: str | os.PathLike[str], *, quota_bytes: int = 256 * 1024 * 1024) -> None:
        self.dir = Path(directory)
        self.requested_dir = self.dir / REQUESTED
        self.kept_dir = self.dir / KEPT
        for d in (self.dir, self.requested_dir, self.kept_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes

    def save(self, kind: str, data: bytes, content_type: str) -> StoredMedia:
        """A file to upload now: the caller sends its up/media request."""
        request_id = new_message_id()
        path = self.dir / f"{request_id}.{kind}.{_EXT.get(content_type, 'bin')}"
        write_atomic(path, data, mode=0o600)
        self._enforce_quota(keep=path)
        return StoredMedia(request_id, kind, path, len(data), hashlib.sha256(data).hexdigest(), content_type)

    def keep(self, event_id: str, kind: str, data: bytes, content_type: str) -> Path:
        """Keep an event's file on the device until quota eviction or a command asks for it."""
        path = self.kept_dir / f"{event_id}.{kind}.{_EXT.get(content_type, 'bin')}"
        write_atomic(path, data, mode=0o600)
        self._enforce_quota(keep=path)
        return path

    def kept(self, event_id: str, kind: str) -> Path | None:
        return next(self._named(self.kept_dir, event_id, kind), None)

    def request_kept(self, event_id: str, kind: str) -> StoredMedia | None:
        """Queue the kept file of `event_id` for upload under a new request id; None if not kept.

        The kept file stays (a refused or failed upload can be asked for again); the upload
        gets a hard link to it, or a copy where the filesystem has no links (FAT SD cards).
        """
        src = self.kept(event_id, kind)
        if src is None:
            return None
        request_id = new_message_id()
        dst = self.requested_dir / f"{request_id}.{kind}{src.suffix}"
        try:
            os.link(src, dst)
        except OSError:
            tmp = dst.with_suffix(dst.suffix + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        data = dst.read_bytes()
        content_type = _TYPES.get(src.suffix.lstrip("."), "application/octet-stream")
        return StoredMedia(request_id, kind, dst, len(data), hashlib.sha256(data).hexdigest(), content_type)

    def find(self, request_id: str) -> Pending | None:
        """The file waiting for `request_id`, or None."""
        for directory, requested in ((self.dir, False), (self.requested_dir, True)):
            for path in self._named(directory, request_id):
                return Pending(path.name.split(".")[1], path, requested)
        return None

    def remove(self, request_id: str) -> None:
        found = self.find(request_id)
        if found is not None:
            found.path.unlink(missing_ok=True)

    @staticmethod
    def _named(directory: Path, stem: str, kind: str | None = None):
        for path in directory.glob(f"{stem}.*"):
            parts = path.name.split(".")
            if len(parts) == 3 and parts[0] == stem and (kind is None or parts[1] == kind):
                yield path

    def _files(self) -> list[tuple[int, float, Path, int]]:
        """(eviction rank, mtime, path, bytes freed by deleting it), kept files first, oldest first.

        A kept clip being uploaded has a second name (a hard link) under requested/: its bytes
        are counted there, and deleting the kept name alone frees nothing (0).
        """
        out, seen = [], set()
        dirs = (self.kept_dir, self.dir, self.requested_dir)
        for rank in reversed(range(len(dirs))):
            for p in dirs[rank].iterdir():
                if not p.is_file():
                    continue
                st = p.stat()
                inode = (st.st_dev, st.st_ino)
                out.append((rank, st.st_mtime, p, 0 if inode in seen else st.st_size))
                seen.add(inode)
        return sorted(out, key=lambda f: (f[0], f[1]))

    def usage(self) -> int:
        """Bytes on disk under the store (hard links counted once)."""
        return sum(f[3] for f in self._files())

    def _enforce_quota(self, keep: Path) -> None:
        files = self._files()
        total = sum(f[3] for f in files)
        for _, _, p, size in files:
            if total <= self.quota_bytes:
                break
            if p == keep or size == 0:
                continue
            total -= size
            p.unlink(missing_ok=True)
            log.warning("media quota: dropped %s", p.relative_to(self.dir))
