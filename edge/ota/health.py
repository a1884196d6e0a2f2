"""Default health check of a new model: it loads, runs a self-test frame in budget, outputs are sane.

Any callable `(model_path: Path) -> None` raising HealthCheckError works in its
place (the agent may pass one built on its own detector; tests inject failures).
The "no crash for a grace period" part is the client's: it commits the trial
only after `grace_s` more seconds alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from edge.ota.errors import HealthCheckError

HealthCheck = Callable[[Path], None]

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


class OnnxHealthCheck:
    """Load with ONNX Runtime (CPU), run `frames` self-test frames, each within `latency_budget_ms`.

    The self-test frame is a deterministic gradient (no camera needed). Dynamic
    dimensions are 1 for the batch (first) axis and `frame_size` elsewhere.
    """

    def __init__(self, *, latency_budget_ms: float = 1000.0, frames: int = 3, frame_size: int = 128) -> None:
        self.latency_budget_ms = latency_budget_ms
        self.frames = frames
        self.frame_size = frame_size
        self.last_latency_ms: float | None = None

    def _feeds(self, session) -> dict:
        import numpy as np

        feeds = {}
        for inp in session.get_inputs():
            dtype = _DTYPES.get(inp.type)
            if dtype is None:
                raise HealthCheckError(
                    "inference_failed", f"input {inp.name} has unsupported type {inp.type}"
                )
            shape = [
                d if isinstance(d, int) and d > 0 else (1 if i == 0 else self.frame_size)
                for i, d in enumerate(inp.shape)
            ]
            ramp = np.linspace(0.0, 1.0, num=int(np.prod(shape)) or 1, dtype="float64").reshape(shape)
            feeds[inp.name] = (ramp * 255).astype(dtype) if dtype in ("uint8", "int8") else ramp.astype(dtype)
        return feeds

    def __call__(self, model_path: Path) -> None:
        import numpy as np
        import onnxruntime as ort

        if not Path(model_path).is_file():
            raise HealthCheckError("missing", str(model_path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # leave the other cores to the running pipeline
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises untyped errors for any bad file
            raise HealthCheckError("load_failed", str(exc)[:300]) from None
        feeds = self._feeds(session)
        worst = 0.0
        for i in range(self.frames + 1):  # +1: the first run is warm-up and not timed
            start = time.perf_counter()
            try:
                outputs = session.run(None, feeds)
            except Exception as exc:
                raise HealthCheckError("inference_failed", str(exc)[:300]) from None
            elapsed_ms = (time.perf_counter() - start) * 1000
            if i > 0:
                worst = max(worst, elapsed_ms)
            for out in outputs:
                arr = np.asarray(out)
                if arr.size == 0:
                    raise HealthCheckError("bad_output", "empty output")
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise HealthCheckError("bad_output", "NaN or infinity in the output")
        self.last_latency_ms = worst
        if worst > self.latency_budget_ms:
            raise HealthCheckError("too_slow", f"{worst:.1f} ms > budget {self.latency_budget_ms:.1f} ms")


class DetectorHealthCheck(OnnxHealthCheck):
    """The checks above, then the agent's own detector on the model: it must follow the detector's
    I/O convention (edge.vision.onnx_detector) and pass its self-test. A model that loads and runs
    but has the wrong input shape or outputs is refused here, in its trial, so the agent reverts
    to the previous model by itself instead of committing one its camera cannot use.

    `required_labels` (the camera's alert labels): a model that cannot detect one of them is refused
    too (`missing_labels`): committing it would end this camera's alerts without a word."""

    def __init__(self, *, required_labels: Iterable[str] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.required_labels = tuple(dict.fromkeys(required_labels))

    def __call__(self, model_path: Path) -> None:
        super().__call__(model_path)
        from edge.vision.errors import VisionError
        from edge.vision.onnx_detector import OnnxDetector

        try:
            detector = OnnxDetector(model_path)
            detector.self_test()
        except VisionError as exc:
            raise HealthCheckError(exc.reason, str(exc)[:300]) from None
        if self.required_labels:
            detector.set_labels(self.required_labels)
            missing = [label for label in self.required_labels if label not in detector.labels]
            if missing:
                raise HealthCheckError(
                    "missing_labels", f"the model cannot detect {', '.join(missing)} (alert labels here)"
                )
