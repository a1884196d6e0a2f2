"""What every storage backend provides, the key rule and the error type."""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO, Protocol

from fleet.errors import FleetError

# Relative paths of safe segments: no "..", no leading "/", nothing a URL or a shell would misread.
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
MAX_KEY_LENGTH = 512
CHUNK = 1024 * 1024


class StorageError(FleetError):
    """Reasons: bad_key, not_found, no_such_upload, bad_part, too_large, bad_signature, misconfigured, unavailable."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise StorageError("bad_key", f"invalid object key {str(key)[:100]!r}")
    if any(segment.strip(".") == "" for segment in key.split("/")):
        raise StorageError("bad_key", f"invalid object key {key[:100]!r}")
    return key


class HashingReader:
    """Wraps a binary stream, counting and sha256-hashing what is read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.size = 0
        self._sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.size += len(data)
        self._sha.update(data)
        return data

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def hash_stream(stream: BinaryIO) -> tuple[int, str]:
    """(size, sha256 hex) of everything left in the stream, read in 1 MiB chunks."""
    reader = HashingReader(stream)
    while reader.read(CHUNK):
        pass
    return reader.size, reader.sha256


class Backend(Protocol):
    def put(self, key: str, fileobj: BinaryIO) -> tuple[int, str]: ...
    def open(self, key: str) -> BinaryIO: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def presigned_get(self, key: str, expires_s: int) -> str: ...
    def multipart_create(self, key: str) -> str: ...
    def multipart_part_urls(
        self, key: str, upload_id: str, part_numbers: list[int], expires_s: int, max_part_bytes: int | None
    ) -> dict[int, str]: ...
    def multipart_complete(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> tuple[int, str]: ...
    def multipart_abort(self, key: str, upload_id: str) -> None: ...
    def check(self) -> None: ...
