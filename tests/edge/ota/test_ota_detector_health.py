"""The agent's OTA health check runs its own detector on the trial model."""

import pytest

from edge.ota import DetectorHealthCheck, HealthCheckError
from tests.edge.detector_models import default_model, heatmap_model, tiny_model


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_the_default_models_pass(variant):
    check = DetectorHealthCheck()
    check(default_model(variant))
    assert check.last_latency_ms is not None and check.last_latency_ms > 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (heatmap_model(), "model_contract"),  # loads and runs: the generic check alone would pass it
        (tiny_model(input_shape=(1, 1, 64, 64)), "model_contract"),
        (tiny_model(nan=True), "bad_output"),
        (b"junk", "load_failed"),
    ],
)
def test_a_model_the_detector_cannot_use_fails_with_a_reason(tmp_path, data, reason):
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(HealthCheckError) as err:
        DetectorHealthCheck()(path)
    assert err.value.reason == reason


def test_a_model_that_cannot_detect_an_alert_label_fails(tmp_path):
    """A vehicles-only model passes a car-park camera and fails one that alerts on people."""
    path = tmp_path / "vehicles.onnx"
    path.write_bytes(tiny_model(labels=["car", "bus", "truck", "motorcycle"]))
    DetectorHealthCheck(required_labels=["vehicle"])(path)
    with pytest.raises(HealthCheckError) as err:
        DetectorHealthCheck(required_labels=["person", "vehicle"])(path)
    assert err.value.reason == "missing_labels" and "person" in str(err.value)
    DetectorHealthCheck(required_labels=["person"])(default_model())
