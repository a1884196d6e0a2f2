"""The OTA client's one error type; its reason goes into up/ota as the failure reason."""

from __future__ import annotations


class OtaError(Exception):
    """Reasons: locked, state_corrupt, root_key_mismatch, no_root_key, download_failed, disk_full,
    origin_refused (an artifact URL or redirect off the allowed origins), download_timeout."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class HealthCheckError(OtaError):
    """The new model failed its health check. Reasons: missing, load_failed, inference_failed,
    bad_output, too_slow, and from the detector: model_contract, model_invalid."""
