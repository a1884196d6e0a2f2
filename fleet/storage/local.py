"""Objects as files under MEDIA_ROOT; presigned URLs are Django-signed tokens served by fleet.storage.views.

Multipart uploads stage parts in MEDIA_ROOT/.multipart/<upload_id>/ (keys never start with
".", so staging cannot collide with an object). A part PUT twice is simply replaced, which
is what a device resuming after a power cut relies on. The ETag of a part is its quoted
MD5, as S3 answers, so a device cannot tell the two backends apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from django.core import signing

from fleet.storage.base import CHUNK, HashingReader, StorageError, check_key

SALT = "fleet.storage.local"
STAGING = ".multipart"
# S3's own ceiling for one part; a URL signed without a tighter limit still stops here.
MAX_PART_BYTES = 5 * 1024**3
_UPLOAD_ID_HEX = 32


def sign(payload: dict, expires_s: int) -> str:
    return signing.dumps({**payload, "x": int(time.time()) + int(expires_s)}, salt=SALT)


def verify(token: str, op: str) -> dict:
    """The signed claims of a URL token; StorageError 403 when forged, tampered, for another op or expired."""
    try:
        claims = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise StorageError("bad_signature", "The URL signature is not valid.", status=403) from None
    if not isinstance(claims, dict) or claims.get("op") != op:
        raise StorageError("bad_signature", "The URL is not valid for this request.", status=403)
    if time.time() >= claims.get("x", 0):
        raise StorageError("expired", "The URL has expired.", status=403)
    return claims


def _atomic_write(target: Path, chunks) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class LocalBackend:
    def __init__(self, *, root: str, public_url: str) -> None:
        self.root = Path(root)
        self.public_url = public_url.rstrip("/")

    # -- objects ------------------------------------------------------------------

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, fileobj: BinaryIO) -> tuple[int, str]:
        reader = HashingReader(fileobj)
        _atomic_write(self.path(key), iter(lambda: reader.read(CHUNK), b""))
        return reader.size, reader.sha256

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise StorageError("not_found", f"no object {key!r}", status=404) from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    def presigned_get(self, key: str, expires_s: int) -> str:
        token = sign({"op": "get", "k": key}, expires_s)
        return f"{self.public_url}/files/o/{key}?t={token}"

    # -- multipart ----------------------------------------------------------------

    def _staging(self, upload_id: str) -> Path:
        if len(upload_id) != _UPLOAD_ID_HEX or not all(c in "0123456789abcdef" for c in upload_id):
            raise StorageError("no_such_upload", "unknown upload id", status=404)
        return self.root / STAGING / upload_id

    def _upload_key(self, upload_id: str) -> str:
        try:
            return (self._staging(upload_id) / "key").read_text()
        except FileNotFoundError:
            raise StorageError("no_such_upload", "unknown or finished upload", status=404) from None

    def multipart_create(self, key: str) -> str:
        upload_id = uuid.uuid4().hex
        staging = self._staging(upload_id)
        staging.mkdir(parents=True)
        (staging / "key").write_text(key)
        return upload_id

    def multipart_part_urls(
        self, key: str, upload_id: str, part_numbers: list[int], expires_s: int, max_part_bytes: int | None
    ) -> dict[int, str]:
        limit = min(max_part_bytes or MAX_PART_BYTES, MAX_PART_BYTES)
        urls = {}
        for n in part_numbers:
            token = sign({"op": "part", "k": key, "u": upload_id, "n": n, "m": limit}, expires_s)
            urls[n] = f"{self.public_url}/files/part/{upload_id}/{n}?t={token}"
        return urls

    def write_part(self, *, upload_id: str, number: int, stream: BinaryIO, max_bytes: int) -> str:
        """Store one part from a request body; returns its ETag. StorageError 413 past max_bytes."""
        self._upload_key(upload_id)
        md5 = hashlib.md5(usedforsecurity=False)  # the S3 ETag of a part, not a security check
        size = 0

        def chunks():
            nonlocal size
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise StorageError("too_large", f"part is larger than {max_bytes} bytes", status=413)
                md5.update(chunk)
                yield chunk

        _atomic_write(self._staging(upload_id) / f"{number}.part", chunks())
        return f'"{md5.hexdigest()}"'

    def multipart_complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> tuple[int, str]:
        staging = self._staging(upload_id)
        if self._upload_key(upload_id) != key:
            raise StorageError("no_such_upload", "the upload belongs to another key", status=404)
        if not parts:
            raise StorageError("bad_part", "no parts given")
        sha, size = hashlib.sha256(), 0

        def assembled():
            nonlocal size
            for number, etag in parts:
                md5 = hashlib.md5(usedforsecurity=False)
                try:
                    part = (staging / f"{number}.part").open("rb")
                except FileNotFoundError:
                    raise StorageError("bad_part", f"part {number} was never uploaded") from None
                with part:
                    while chunk := part.read(CHUNK):
                        md5.update(chunk)
                        sha.update(chunk)
                        size += len(chunk)
                        yield chunk
                if f'"{md5.hexdigest()}"' != etag and md5.hexdigest() != etag:
                    raise StorageError("bad_part", f"part {number}: ETag does not match the stored part")

        _atomic_write(self.path(key), assembled())
        shutil.rmtree(staging, ignore_errors=True)
        return size, sha.hexdigest()

    def multipart_abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(StorageError):
            shutil.rmtree(self._staging(upload_id), ignore_errors=True)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.root, prefix=".ready-"):
            pass
