"""Chunked, resumable HTTP(S) upload of one media file on a server grant.

Each finished part and its ETag is committed to the uplink database before the next
part starts, so after a crash or reboot the upload resumes at the first unfinished
part; the server's store overwrites a part that is PUT twice, so the part in flight
when the power went is simply sent again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import requests
from requests.structures import CaseInsensitiveDict

from edge.uplink.db import UplinkDB
from edge.uplink.errors import UplinkError

log = logging.getLogger(__name__)

# Worth retrying: the link or the store hiccupped. Anything else 4xx is final (bad or
# expired signature, missing upload) and needs a new grant.
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "fleet-edge"


def upload_session() -> requests.Session:
    """A session whose PUTs carry only Host, Content-Length, a short User-Agent and
    Accept-Encoding: identity (urllib3's own). requests' defaults (Accept, gzip Accept-Encoding,
    Connection: keep-alive, the library version) add ~55 bytes to every part: on a thumbnail
    that is several per cent of its bytes, and a part's answer has no body to compress."""
    session = requests.Session()
    session.headers = CaseInsensitiveDict({"User-Agent": USER_AGENT})
    return session


@dataclass(frozen=True)
class GrantPart:
    number: int
    url: str


@dataclass(frozen=True)
class UploadGrant:
    request_id: str
    upload_id: str
    part_size: int
    parts: tuple[GrantPart, ...]
    expires: float  # unix seconds

    @classmethod
    def from_message(cls, grant: Mapping[str, Any] | msgspec.Struct) -> UploadGrant:
        """From down/media result=granted (protocol.down.MediaGranted or its dict)."""
        if isinstance(grant, msgspec.Struct):
            grant = msgspec.to_builtins(grant)
        expires = grant["expires"]
        if isinstance(expires, str):
            expires = dt.datetime.fromisoformat(expires).timestamp()
        return cls(
            request_id=str(grant["request_id"]),
            upload_id=str(grant["upload_id"]),
            part_size=int(grant["part_size"]),
            parts=tuple(
                sorted(
                    (GrantPart(int(p["number"]), str(p["url"])) for p in grant["parts"]),
                    key=lambda p: p.number,
                )
            ),
            expires=float(expires),
        )


class MediaUploader:
    """PUT a file part by part on a grant, persisting progress in the uplink database."""

    def __init__(
        self,
        db: UplinkDB,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        before_part: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.session = session or upload_session()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._backoff_min, self._backoff_max = backoff
        self._clock = clock
        self._sleep = sleep
        # Hook to wait for shaping tokens before each part (bytes of the part).
        self._before_part = before_part

    def done_parts(self, upload_id: str) -> dict[int, str]:
        """Parts already uploaded for `upload_id`: {number: etag}."""
        return dict(self.db.query("SELECT number, etag FROM media_part WHERE upload_id = ?", (upload_id,)))

    def forget(self, upload_id: str) -> None:
        """Drop the progress record once the server confirmed the completed upload."""

        def delete() -> None:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM media_part WHERE upload_id = ?", (upload_id,))
                conn.execute("DELETE FROM media_upload WHERE upload_id = ?", (upload_id,))

        self.db.write_freeing(delete)

    def upload(self, path: str | Path, grant: UploadGrant) -> list[dict[str, Any]]:
        """Upload the parts not yet done; returns [{number, etag}] for up/media op=complete."""
        path = Path(path)
        self._check_expiry(grant)
        size = path.stat().st_size
        expected = max(1, -(-size // grant.part_size))
        numbers = [p.number for p in grant.parts]
        if numbers != list(range(1, expected + 1)):
            raise UplinkError(
                "grant_mismatch",
                f"{path.name}: {size} bytes in {grant.part_size}-byte parts needs parts 1..{expected}, "
                f"grant has {len(numbers)}",
            )
        self._register(path, size, grant)
        done = self.done_parts(grant.upload_id)
        with path.open("rb") as f:
            for part in grant.parts:
                if part.number in done:
                    continue
                self._check_expiry(grant)
                f.seek((part.number - 1) * grant.part_size)
                body = f.read(grant.part_size)
                if self._before_part is not None:
                    self._before_part(len(body))
                etag = self._put_part(part, body)
                with self.db.transaction() as conn:
                    conn.execute(
                        "INSERT OR REPLACE INTO media_part (upload_id, number, etag) VALUES (?, ?, ?)",
                        (grant.upload_id, part.number, etag),
                    )
                done[part.number] = etag
        return [{"number": n, "etag": done[n]} for n in sorted(done)]

    def _check_expiry(self, grant: UploadGrant) -> None:
        if self._clock() >= grant.expires:
            raise UplinkError(
                "grant_expired",
                f"upload {grant.upload_id} grant expired at {grant.expires:.0f}; ask for a new grant "
                "(finished parts are kept)",
            )

    def _register(self, path: Path, size: int, grant: UploadGrant) -> None:
        rows = self.db.query(
            "SELECT path, size, part_size FROM media_upload WHERE upload_id = ?", (grant.upload_id,)
        )
        if rows and (rows[0][1] != size or rows[0][2] != grant.part_size):
            raise UplinkError(
                "file_changed",
                f"upload {grant.upload_id} started with {rows[0][1]} bytes in {rows[0][2]}-byte parts, "
                f"now {size} in {grant.part_size}",
            )
        if not rows:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO media_upload (upload_id, request_id, path, size, part_size) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (grant.upload_id, grant.request_id, os.fspath(path), size, grant.part_size),
                )

    def _put_part(self, part: GrantPart, body: bytes) -> str:
        delay = self._backoff_min
        last: str = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = self.session.put(part.url, data=body, timeout=self.timeout)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code in _RETRY_STATUS:
                    last = f"HTTP {resp.status_code}"
                elif resp.status_code >= 400:
                    raise UplinkError(
                        "part_rejected", f"part {part.number}: HTTP {resp.status_code} {resp.text[:200]}"
                    )
                else:
                    etag = resp.headers.get("ETag")
                    if not etag:
                        raise UplinkError(
                            "no_etag", f"part {part.number}: HTTP {resp.status_code} without ETag"
                        )
                    return etag
            if attempt < self.max_attempts:
                log.warning(
                    "part %s attempt %s failed (%s); retrying in %.1fs", part.number, attempt, last, delay
                )
                # Full jitter: many cameras coming back after one outage must not retry in step.
                self._sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, self._backoff_max)
        raise UplinkError(
            "upload_failed", f"part {part.number} failed {self.max_attempts} times; last: {last}"
        )
