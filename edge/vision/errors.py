"""The one error type of the vision package."""

from __future__ import annotations


class VisionError(Exception):
    """Raised by sources, detectors, the model builder and config parsing; `reason` is a stable code.

    Reasons: source_missing, source_unreadable, stream_unavailable, stream_lost, camera_unavailable,
    bad_spec, bad_config, model_missing, model_invalid, model_contract, encode_failed.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}" if message else reason)
