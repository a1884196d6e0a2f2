"""Resumable artifact download through protocol's DownloadVerifier.

Sources: http(s):// (HTTP Range resume), file:// or a plain local path (seek).
The partial file survives restarts; the verifier re-hashes it on resume.

Only from where the device was told to fetch: every URL, and every redirect, must be on one
of `allowed_origins` (the server's and its object store's, from enrollment), so a manifest
cannot point a camera at its LAN or at anyone else; local files only if FILE_ORIGIN is
allowed. And not for ever: past `deadline_s` the connection is cut, whatever trickles in.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import requests

from edge.ota.errors import OtaError
from edge.ota.faults import checkpoint
from protocol.download import origin_allowed
from protocol.errors import ManifestError
from protocol.manifest import DownloadVerifier

MAX_REDIRECTS = 5

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


@dataclass(frozen=True)
class _Source:
    url: str
    local: Path | None
    session: requests.Session
    chunk_size: int
    timeout_s: float
    allowed: Collection[str]
    deadline: float  # time.monotonic()


def _refuse_origin(url: str, allowed: Collection[str]) -> None:
    if not origin_allowed(url, allowed):
        raise OtaError("origin_refused", f"{url[:200]} is not on an allowed download origin")


def _cut(resp: requests.Response) -> None:
    """Shut the response's socket down, which ends a read blocked in another thread."""
    with contextlib.suppress(Exception):  # whatever state the connection is in, it is going away
        sock = getattr(getattr(resp.raw, "_connection", None), "sock", None) or resp.raw._fp.fp.raw._sock
        sock.shutdown(socket.SHUT_RDWR)


def _stream_http(source: _Source, offset: int):
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    url, timeout, deadline = source.url, (source.timeout_s, source.timeout_s), source.deadline
    for _ in range(MAX_REDIRECTS + 1):
        _refuse_origin(url, source.allowed)
        resp = source.session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False)
        if not resp.is_redirect:
            break
        resp.close()
        url = urljoin(url, resp.headers["Location"])
    else:
        raise OtaError("download_failed", f"more than {MAX_REDIRECTS} redirects")
    # A server may keep each read inside timeout_s and still never finish: the watchdog ends it.
    watchdog = None
    if deadline != float("inf"):
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (resp,))
        watchdog.daemon = True
        watchdog.start()
    try:
        with resp:
            yield from _read_http(resp, offset, source.chunk_size)
    except (requests.RequestException, ConnectionError, OSError):
        if time.monotonic() >= deadline:
            raise OtaError("download_timeout", "the download took longer than its deadline") from None
        raise
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _read_http(resp: requests.Response, offset: int, chunk_size: int):
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
    allowed_origins: Collection[str],
    deadline_s: float | None = None,
    session: requests.Session | None = None,
    chunk_size: int = 256 * 1024,
    timeout_s: float = 30.0,
    max_attempts: int = 5,
    backoff_s: float = 0.5,
    on_progress: Progress | None = None,
    on_stream_end: Callable[[], None] | None = None,
) -> None:
    """Fetch `url` into `dest` (appending to what is there) until size and sha256 match.

    Raises ManifestError (oversize_download, size_mismatch, hash_mismatch) or OtaError
    (origin_refused: `url` or a redirect is not on `allowed_origins`; download_timeout: not
    done within `deadline_s`, retries included; download_failed). A refused partial file is
    deleted so the next attempt starts clean; one cut by the deadline is kept for a later
    offer to resume. A hash mismatch after resuming is retried once from byte 0 (the old
    partial may have been from a corrupted write).
    """
    _refuse_origin(url, allowed_origins)
    source = _Source(
        url=url,
        local=_local_path(url),
        session=session or requests.Session(),
        chunk_size=chunk_size,
        timeout_s=timeout_s,
        allowed=allowed_origins,
        deadline=time.monotonic() + (deadline_s if deadline_s is not None else float("inf")),
    )
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
            if time.monotonic() >= source.deadline:
                raise OtaError("download_timeout", f"not done within {deadline_s:.0f} s")
            if verifier.received < size:
                _fetch_into(verifier, dest, source, on_progress)
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
    verifier: DownloadVerifier, dest: Path, source: _Source, on_progress: Progress | None
) -> None:
    offset = verifier.received
    stream = (
        _stream_local(source.local, offset, source.chunk_size)
        if source.local is not None
        else _stream_http(source, offset)
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
