"""The one error type of the uplink package."""

from __future__ import annotations


class UplinkError(Exception):
    """Raised by the uplink queue, shaper and media uploader; `reason` is a stable code.

    Reasons: disk_full, quota_full, item_too_large, unknown_class, grant_expired,
    grant_mismatch, part_rejected, upload_failed, file_changed, no_etag.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}" if message else reason)
