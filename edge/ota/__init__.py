"""On-device OTA: A/B model slots, signed-manifest verification, trial + health check + rollback.

Pure Python (no Django). See client.OtaClient; docs/protocol.md for the wire side.
"""

from edge.ota.client import MAX_TRIAL_ATTEMPTS, OtaClient, OtaJob
from edge.ota.errors import HealthCheckError, OtaError
from edge.ota.health import DetectorHealthCheck, HealthCheck, OnnxHealthCheck

__all__ = [
    "MAX_TRIAL_ATTEMPTS",
    "DetectorHealthCheck",
    "HealthCheck",
    "HealthCheckError",
    "OnnxHealthCheck",
    "OtaClient",
    "OtaError",
    "OtaJob",
]
