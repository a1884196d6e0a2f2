"""Where an artifact may come from, and a streaming check of it against its manifest's size and sha256."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from protocol.errors import ManifestError

_CHUNK = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The origin of every local file (file:// URL or absolute path): allowed only where named.
FILE_ORIGIN = "file://"


def origin(url: str) -> str:
    """scheme://host:port of a URL, lower-cased, with the scheme's default port made explicit.

    Local files (file:// or an absolute path) have the one origin FILE_ORIGIN. ValueError for
    anything else that is not an http(s) URL with a host.
    """
    if url.startswith("/") or url.lower().startswith("file:"):
        return FILE_ORIGIN
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url[:100]!r}")
    port = parts.port or _DEFAULT_PORTS[scheme]  # ValueError for a port out of range
    host = parts.hostname.lower()
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def origin_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Whether `url` is on one of the `allowed` origins (each given as a URL or an origin)."""
    try:
        wanted = origin(url)
        return any(wanted == origin(a) for a in allowed)
    except ValueError:
        return False


class DownloadVerifier:
    """Feed every downloaded chunk to update(); call finish() at the end.

    update() refuses as soon as more than `size` bytes arrive (oversize_download),
    so a server that never stops sending cannot fill the disk. finish() refuses a
    short download (size_mismatch) or a wrong digest (hash_mismatch).

    Resuming: hash objects cannot be persisted portably, so a resumed download
    re-hashes the partial file on disk (resume(); a sequential read, cheap next
    to the network) and then continues from its length with an HTTP Range request.
    """

    def __init__(self, size: int, sha256: str) -> None:
        if size <= 0 or len(sha256) != 64:
            raise ValueError("size must be > 0 and sha256 64 hex chars")
        self.size = size
        self.sha256 = sha256.lower()
        self.received = 0
        self._hash = hashlib.sha256()

    @classmethod
    def resume(cls, size: int, sha256: str, partial: str | os.PathLike[str]) -> DownloadVerifier:
        """A verifier that has already seen the bytes of `partial` (missing file: nothing yet)."""
        verifier = cls(size, sha256)
        path = Path(partial)
        if path.exists():
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    verifier.update(chunk)
        return verifier

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        if self.received + len(chunk) > self.size:
            self.received += len(chunk)
            raise ManifestError("oversize_download", f"more than the {self.size} bytes the manifest names")
        self.received += len(chunk)
        self._hash.update(chunk)

    @property
    def progress(self) -> float:
        return min(1.0, self.received / self.size)

    def finish(self) -> str:
        """Return the hex digest once size and hash match the manifest."""
        if self.received != self.size:
            raise ManifestError("size_mismatch", f"got {self.received} bytes, manifest says {self.size}")
        digest = self._hash.hexdigest()
        if digest != self.sha256:
            raise ManifestError("hash_mismatch", f"sha256 {digest} != manifest {self.sha256}")
        return digest
