"""The one object-store layer: media (snapshots, clips) and model artifacts.

STORAGE_BACKEND selects the backend: "local" keeps objects under MEDIA_ROOT and
hands out URLs signed by Django (served by fleet.storage.views under /files/);
"s3" talks to any S3 API (AWS, SeaweedFS, MinIO) through boto3 with path-style
addressing. Callers use the module functions below and never a backend directly:

    put(key, fileobj) -> (size, sha256)
    open(key) -> binary file object          exists(key) -> bool        delete(key)
    presigned_get(key, expires_s) -> url
    multipart_create(key) -> upload_id
    multipart_part_urls(key, upload_id, part_numbers, expires_s, max_part_bytes=None) -> {n: url}
    multipart_complete(key, upload_id, parts=[(n, etag), ...]) -> (size, sha256)
    multipart_abort(key, upload_id)

Keys are relative paths of [A-Za-z0-9._-] segments separated by "/".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import BinaryIO

from django.conf import settings

from fleet.storage.base import Backend, StorageError, check_key
from protocol.download import origin

__all__ = [
    "Backend",
    "StorageError",
    "backend",
    "check_key",
    "check_storage",
    "delete",
    "download_origins",
    "exists",
    "multipart_abort",
    "multipart_complete",
    "multipart_create",
    "multipart_part_urls",
    "open",
    "presigned_get",
    "put",
]


@lru_cache(maxsize=4)
def _backend_for(config: tuple) -> Backend:
    kind = config[0]
    if kind == "local":
        from fleet.storage.local import LocalBackend

        return LocalBackend(root=config[1], public_url=config[2])
    if kind == "s3":
        from fleet.storage.s3 import S3Backend

        _, endpoint, bucket, key_id, secret, region = config
        return S3Backend(
            endpoint_url=endpoint,
            bucket=bucket,
            access_key_id=key_id,
            secret_access_key=secret,
            region=region,
        )
    raise StorageError("misconfigured", f"STORAGE_BACKEND must be 'local' or 's3', not {kind!r}")


def backend() -> Backend:
    """The configured backend; re-read from settings on each call so tests can switch it."""
    if settings.STORAGE_BACKEND == "s3":
        config: tuple = (
            "s3",
            settings.S3_ENDPOINT_URL,
            settings.S3_BUCKET,
            settings.S3_ACCESS_KEY_ID,
            settings.S3_SECRET_ACCESS_KEY,
            settings.S3_REGION,
        )
    else:
        config = (settings.STORAGE_BACKEND, str(settings.MEDIA_ROOT), settings.PUBLIC_URL)
    return _backend_for(config)


def put(key: str, fileobj: BinaryIO) -> tuple[int, str]:
    """Store the stream under `key` (replacing any object there); returns (size, sha256 hex)."""
    return backend().put(check_key(key), fileobj)


def open(key: str) -> BinaryIO:
    """A readable binary stream of the object; StorageError("not_found") if absent. Close it."""
    return backend().open(check_key(key))


def exists(key: str) -> bool:
    return backend().exists(check_key(key))


def delete(key: str) -> None:
    """Remove the object; deleting a missing object is not an error."""
    backend().delete(check_key(key))


def presigned_get(key: str, expires_s: int) -> str:
    """A URL anyone holding it may GET for `expires_s` seconds."""
    return backend().presigned_get(check_key(key), int(expires_s))


def download_origins() -> list[str]:
    """The origins devices may download from: the server's and its object store's (as presigned URLs
    name it; presigning is computed locally). Devices refuse artifact URLs anywhere else."""
    return sorted({origin(settings.PUBLIC_URL), origin(presigned_get("origin-probe", 60))})


def multipart_create(key: str) -> str:
    """Start a multipart upload to `key`; returns its upload id."""
    return backend().multipart_create(check_key(key))


def multipart_part_urls(
    key: str, upload_id: str, part_numbers: Iterable[int], expires_s: int, max_part_bytes: int | None = None
) -> dict[int, str]:
    """One presigned PUT URL per part number. `max_part_bytes` is enforced where the backend can (local)."""
    return backend().multipart_part_urls(
        check_key(key), upload_id, list(part_numbers), int(expires_s), max_part_bytes
    )


def multipart_complete(
    key: str, upload_id: str, parts: Iterable[tuple[int, str]] | Mapping[int, str]
) -> tuple[int, str]:
    """Assemble the parts (number, etag) in order; returns the object's (size, sha256 hex).

    StorageError reasons: no_such_upload, bad_part (missing part or wrong ETag).
    """
    pairs = sorted(parts.items() if isinstance(parts, Mapping) else parts)
    return backend().multipart_complete(check_key(key), upload_id, pairs)


def multipart_abort(key: str, upload_id: str) -> None:
    """Drop an unfinished upload and its parts; aborting an unknown upload is not an error."""
    backend().multipart_abort(check_key(key), upload_id)


def check_storage() -> None:
    """Readiness check (/readyz): the store answers and the bucket / directory is usable."""
    backend().check()
