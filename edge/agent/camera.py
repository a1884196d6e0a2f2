"""The camera thread: source -> Pipeline -> detection events, paced, reconfigurable while running."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge.vision.config import DetectionConfig
from edge.vision.detectors import Detector, MotionBlobDetector
from edge.vision.errors import VisionError
from edge.vision.events import DetectionEvent
from edge.vision.frame import Frame
from edge.vision.pipeline import Pipeline
from edge.vision.sources import open_source

log = logging.getLogger(__name__)

NO_CAMERA = "none"
STATS_PERIOD_S = 5.0


def build_detector(kind: str, model_path: Path | None) -> Detector:
    """The configured detector; "onnx" without an installed model falls back to the built-in one."""
    if kind == "onnx" and model_path is not None:
        from edge.vision.onnx_detector import OnnxDetector  # onnxruntime is heavy: load only when used

        try:
            return OnnxDetector(model_path)
        except Exception as exc:  # a model that passed its health check but will not load here
            log.error("cannot load ONNX model %s (%s); using the built-in detector", model_path, exc)
    elif kind == "onnx":
        log.warning("detector onnx requested but no model is installed; using the built-in detector")
    return MotionBlobDetector()


class Camera:
    """Runs the detection pipeline on a thread; `on_events` gets each frame's events."""

    def __init__(
        self,
        *,
        source: str,
        camera: str,
        detection: dict[str, Any],
        detector: str,
        model_path: Path | None,
        on_events: Callable[[list[DetectionEvent]], None],
        on_stats: Callable[[float, float], None] | None = None,
        realtime: bool = True,
        loop_source: bool = True,
    ) -> None:
        self.source_spec = source
        self.camera = camera
        self.config = DetectionConfig.from_dict({**detection, "detector": detector})
        self._model_path = model_path
        self._on_events = on_events
        self._on_stats = on_stats
        self.realtime = realtime
        self.loop_source = loop_source
        self._pending: DetectionConfig | None = None
        self._pending_model = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_frame: Frame | None = None
        self.pipeline: Pipeline | None = None
        self.error: str | None = None
        self.frames = 0

    @property
    def enabled(self) -> bool:
        return self.source_spec != NO_CAMERA

    def apply(self, detection: dict[str, Any]) -> DetectionConfig:
        """Validate and schedule new detection settings (applied before the next frame)."""
        cfg = DetectionConfig.from_dict(detection)
        with self._lock:
            self.config = cfg
            self._pending = cfg
        return cfg

    def set_model(self, model_path: Path | None) -> None:
        """A new model became active (OTA trial, commit or revert)."""
        with self._lock:
            self._model_path = model_path
            self._pending_model = True

    def start(self) -> None:
        if not self.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _new_pipeline(self) -> Pipeline:
        with self._lock:
            cfg = self.config
            self._pending = None
            self._pending_model = False
            model = self._model_path
        return Pipeline(cfg, build_detector(cfg.detector, model), camera=self.camera)

    def _frames(self) -> Iterator[Frame]:
        """Frames with wall-clock stamps; file and synthetic sources paced and looped."""
        round_ = 0
        while not self._stop.is_set():
            spec = self.source_spec
            if spec.startswith("synthetic:") and round_:
                spec += f",seed={round_}" if "seed=" not in spec else ""
            src = open_source(spec)
            live = spec.startswith(("rtsp://", "rtsps://", "usb:"))
            t0 = time.time()
            try:
                for frame in src:
                    if self._stop.is_set():
                        return
                    if live:
                        yield frame
                        continue
                    ts = t0 + frame.ts
                    if self.realtime:
                        wait = ts - time.time()
                        if wait > 0 and self._stop.wait(wait):
                            return
                    yield replace(frame, ts=ts)
            finally:
                src.close()
            round_ += 1
            if live or not self.loop_source:
                return

    def _run(self) -> None:
        try:
            self.pipeline = self._new_pipeline()
            last_stats, last_sampled = time.monotonic(), 0
            for frame in self._frames():
                if self._pending is not None or self._pending_model:
                    # New settings: a fresh pipeline (tracks restart; the sampler rate may change).
                    self.pipeline = self._new_pipeline()
                    last_sampled = 0
                self.last_frame = frame
                self.frames += 1
                events = self.pipeline.process(frame)
                if events:
                    self._on_events(events)
                now = time.monotonic()
                if self._on_stats is not None and now - last_stats >= STATS_PERIOD_S:
                    stats = self.pipeline.stats
                    fps = (stats.frames_sampled - last_sampled) / (now - last_stats)
                    self._on_stats(max(0.0, fps), stats.inference_ms)
                    last_stats, last_sampled = now, stats.frames_sampled
            if self.pipeline is not None and not self._stop.is_set():
                tail = self.pipeline.flush()
                if tail:
                    self._on_events(tail)
        except VisionError as exc:
            self.error = f"{exc.reason}: {exc}"
            log.error("camera stopped: %s", self.error)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("camera thread failed")
