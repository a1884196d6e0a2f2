"""Resumable artifact download through protocol's DownloadVerifier.

Sources: http(s):// (HTTP Range resume), file:// or a plain local path (seek).
The partial file survives restarts; the verifier re-hashes it on resume.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests

from edge.ota.errors import OtaError
from edge.ota.faults import checkpoint
from protocol.errors import ManifestError
from protocol.manifest import DownloadVerifier

Progress = Callable[[int], None]


class _Restart(Exception):
    """The source ignored or refused our Range: start again from byte 0."""


def _local_path(url: str) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and url.startswith("/"):
        return Path(url)
    return None


def _stream_local(src: Path, offset: int, chunk_size: int):
    try:
        with src.open("rb") as fh:
            fh.seek(offset)
            while chunk := fh.read(chunk_size):
                yield chunk
    except OSError as exc:
        raise OtaError("download_failed", f"{src}: {exc}") from None


def _stream_http(session: requests.Session, url: str, offset: int, chunk_size: int, timeout_s: float):
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with session.get(url, headers=headers, stream=True, timeout=(timeout_s, timeout_s)) as resp:
        if offset and resp.status_code == 200:
            raise _Restart("server ignored Range")
        if resp.status_code == 416:
            raise _Restart("server refused Range")
        if resp.status_code == 206:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise _Restart(f"unexpected Content-Range {content_range!r}")
        elif resp.status_code != 200:
            # 4xx will not heal by retrying (expired presigned URL, gone artifact); 5xx may.
            retry = resp.status_code >= 500 or resp.status_code == 429
            raise (
                OtaError("download_failed", f"HTTP {resp.status_code}")
                if not retry
                else ConnectionError(f"HTTP {resp.status_code}")
            )
        yield from resp.iter_content(chunk_size)


def download(
    url: str,
    dest: Path,
    *,
    size: int,
    sha256: str,
    session: requests.Session | None = None,
    chunk_size: int = 256 * 1024,
    timeout_s: float = 30.0,
    max_attempts: int = 5,
    backoff_s: float = 0.5,
    on_progress: Progress | None = None,
    on_stream_end: Callable[[], None] | None = None,
) -> None:
    """Fetch `url` into `dest` (appending to what is there) until size and sha256 match.

    Raises ManifestError (oversize_download, size_mismatch, hash_mismatch) or
    OtaError("download_failed"); a refused partial file is deleted so the next
    attempt starts clean. A hash mismatch after resuming is retried once from
    byte 0 (the old partial may have been from a corrupted write).
    """
    session = session or requests.Session()
    local = _local_path(url)
    hash_retry_left = True
    attempt = 0
    try:
        verifier = DownloadVerifier.resume(size, sha256, dest)
    except ManifestError:
        dest.unlink(missing_ok=True)  # longer than the artifact: not ours
        verifier = DownloadVerifier(size, sha256)
    while True:
        attempt += 1
        resumed = verifier.received > 0
        try:
            if verifier.received < size:
                _fetch_into(verifier, dest, url, local, session, chunk_size, timeout_s, on_progress)
            if on_stream_end:
                on_stream_end()
            verifier.finish()
            return
        except _Restart:
            dest.unlink(missing_ok=True)
            verifier = DownloadVerifier(size, sha256)
        except ManifestError as exc:
            dest.unlink(missing_ok=True)
            if exc.reason == "hash_mismatch" and resumed and hash_retry_left:
                hash_retry_left = False
                verifier = DownloadVerifier(size, sha256)
                attempt -= 1
                continue
            raise
        except OtaError:
            raise
        except (requests.RequestException, ConnectionError, OSError) as exc:
            if attempt >= max_attempts:
                raise OtaError("download_failed", f"{attempt} attempts, last: {exc}") from None
            time.sleep(min(backoff_s * 2 ** (attempt - 1), 5.0))
            continue
        if attempt >= max_attempts:
            raise OtaError("download_failed", f"gave up after {attempt} attempts")


def _fetch_into(
    verifier: DownloadVerifier,
    dest: Path,
    url: str,
    local: Path | None,
    session: requests.Session,
    chunk_size: int,
    timeout_s: float,
    on_progress: Progress | None,
) -> None:
    offset = verifier.received
    stream = (
        _stream_local(local, offset, chunk_size)
        if local is not None
        else _stream_http(session, url, offset, chunk_size, timeout_s)
    )
    with dest.open("ab") as fh:
        if fh.tell() != offset:  # someone else touched the partial file
            raise _Restart("partial file changed under us")
        for chunk in stream:
            if not chunk:
                continue
            verifier.update(chunk)  # raises before an oversize chunk reaches the disk
            fh.write(chunk)
            fh.flush()
            checkpoint("download_partial")
            if on_progress:
                on_progress(verifier.received)
        os.fsync(fh.fileno())
