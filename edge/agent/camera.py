"""The camera thread: source -> Pipeline -> detection events, paced, reconfigurable while running.

Bad input never stops it. A source that cannot be opened, a truncated file or a stream that
drops is a fault (logged once, shown in the agent's status) and the source is opened again
with backoff. A model that does not load or does not follow the detector's I/O convention is a
fault too: the camera keeps the detector it has (the previous model), else the agent's default
model, else the built-in motion detector, and says which one runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge.quality import QualityMeter, ShadowRun
from edge.vision.config import DetectionConfig
from edge.vision.detectors import Detection, Detector, MotionBlobDetector
from edge.vision.errors import VisionError
from edge.vision.events import DetectionEvent
from edge.vision.frame import Frame
from edge.vision.pipeline import Pipeline
from edge.vision.sources import open_source

log = logging.getLogger(__name__)

NO_CAMERA = "none"
STATS_PERIOD_S = 5.0
RETRY_S = (1.0, 30.0)  # backoff between attempts to open a failed source
BUILTIN_MODEL = ("motion", "builtin")  # how quality telemetry names the built-in motion detector


def model_identity(path: Path | None) -> tuple[str, str]:
    """(model, version) of a model file that is no OTA release: the agent's default model."""
    return BUILTIN_MODEL if path is None else (path.stem, "default")


def build_detector(cfg: DetectionConfig, model_path: Path | None, *, threads: int = 1) -> Detector:
    """The configured detector for `model_path`; raises VisionError if that model cannot be used."""
    if cfg.detector == "builtin":
        return MotionBlobDetector()
    if model_path is None:
        raise VisionError("model_missing", "no model installed and no default model configured")
    from edge.vision.onnx_detector import OnnxDetector  # onnxruntime is heavy: load only when used

    detector = OnnxDetector(
        model_path,
        labels=sorted(cfg.labels) or None,
        min_score=cfg.min_score,
        min_scores=cfg.min_scores,
        threads=threads,
    )
    detector.self_test()
    return detector


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
        on_faults: Callable[[], None] | None = None,
        default_model: Path | None = None,
        threads: int = 1,
        realtime: bool = True,
        loop_source: bool = True,
        identify_model: Callable[[Path | None], tuple[str, str]] = model_identity,
        quality_system: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.source_spec = source
        self.camera = camera
        self.config = DetectionConfig.from_dict({**detection, "detector": detector})
        self._model_path = model_path
        self._default_model = default_model
        self.threads = threads
        self._on_events = on_events
        self._on_stats = on_stats
        self._on_faults = on_faults
        self.realtime = realtime
        self.loop_source = loop_source
        self._pending: DetectionConfig | None = None
        self._pending_model = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_frame: Frame | None = None
        self.pipeline: Pipeline | None = None
        self.detector: Detector | None = None
        self.detector_model: Path | None = None  # the model file the detector runs; None: built-in
        self.faults: dict[str, str] = {}  # "camera" / "model" -> what is wrong
        self.frames = 0
        # Model quality telemetry: one meter per (model, version, role) that ran since the last window.
        self._identify_model = identify_model
        self._quality_system = quality_system
        self._meters: dict[tuple[str, str, str], QualityMeter] = {}
        self.meter: QualityMeter | None = None  # the active model's
        self.shadow: ShadowRun | None = None  # a candidate run beside the active model
        self._pending_shadow: tuple[Path | None, Any] | None = None

    @property
    def enabled(self) -> bool:
        return self.source_spec != NO_CAMERA

    @property
    def error(self) -> str | None:
        return self.faults.get("camera")

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

    def set_shadow(self, model_path: Path | None, request: Any) -> None:
        """Run the candidate at `model_path` in shadow (request: share, cpu_budget_pct), or stop (None)."""
        with self._lock:
            self._pending_shadow = (model_path, request if model_path is not None else None)

    def _apply_shadow(self) -> None:
        with self._lock:
            pending, self._pending_shadow = self._pending_shadow, None
        if pending is None:
            return
        path, request = pending
        self.shadow = None
        if path is None or request is None:
            return
        meter = self.quality_meter(path, "shadow")
        try:
            detector = build_detector(self.config, path, threads=self.threads)
        except VisionError as exc:
            log.error("shadow model refused: %s", exc)
            meter.crashed()
            return
        self.shadow = ShadowRun(
            detector,
            meter,
            share=request.share,
            cpu_budget_pct=request.cpu_budget_pct,
            score_floor=self.config.score_floor,
        )
        log.info("shadow run of %s on 1 in %d frames", path, self.shadow.every)

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

    # -- faults ------------------------------------------------------------------

    def _fault(self, kind: str, text: str | None) -> None:
        if self.faults.get(kind) == text:
            return
        if text is None:
            self.faults.pop(kind, None)
            log.info("%s fault cleared", kind)
        else:
            self.faults[kind] = text
            log.error("%s fault: %s", kind, text)
        if self._on_faults is not None:
            try:
                self._on_faults()
            except Exception:
                log.exception("on_faults callback failed")

    # -- the detector --------------------------------------------------------------

    def _choose_detector(self, cfg: DetectionConfig, model: Path | None) -> Detector:
        """The requested model; else the one running now (the previous model); else the default
        model; else the built-in detector. Each refusal is a fault with its reason."""
        if cfg.detector == "builtin":
            self._fault("model", None)
            self.detector_model = None
            return MotionBlobDetector()
        requested = model or self._default_model
        try:
            detector = build_detector(cfg, requested, threads=self.threads)
        except VisionError as exc:
            problem = f"{exc}"
        else:
            self._fault("model", None)
            self.detector_model = requested
            return detector
        fallbacks = [self.detector_model, self._default_model]
        for path in dict.fromkeys(p for p in fallbacks if p is not None and p != requested):
            try:
                detector = build_detector(cfg, path, threads=self.threads)
            except VisionError:
                continue
            self._fault("model", f"{problem}; running {path.name} instead")
            self.detector_model = path
            return detector
        self._fault("model", f"{problem}; running the built-in motion detector instead")
        self.detector_model = None
        return MotionBlobDetector()

    def _new_pipeline(self) -> Pipeline:
        with self._lock:
            cfg = self.config
            self._pending = None
            self._pending_model = False
            model = self._model_path
        self.detector = self._choose_detector(cfg, model)
        self.meter = self.quality_meter(self.detector_model, "active")
        return Pipeline(cfg, self.detector, camera=self.camera, on_detect=self._on_detect)

    # -- model quality -------------------------------------------------------------

    def initial_model(self) -> Path | None:
        """The model the camera is set to run (before the thread has chosen; None: built-in)."""
        return None if self.config.detector == "builtin" else (self._model_path or self._default_model)

    def quality_meter(self, model_path: Path | None, role: str) -> QualityMeter:
        """The meter of the model at `model_path` in `role`, made on first use."""
        name, version = self._identify_model(model_path)
        key = (name, version, role)
        meter = self._meters.get(key)
        if meter is None:
            system = self._quality_system if role == "active" else None
            meter = self._meters[key] = QualityMeter(model=name, version=version, role=role, system=system)
        return meter

    def _on_detect(self, latency_ms: float, detections: list[Detection], frame: Frame) -> None:
        meter = self.meter
        if meter is None:
            return
        meter.run(latency_ms=latency_ms, detections=detections)
        if self.shadow is not None:
            self.shadow.offer(frame.image, detections)
        # A frame processed more than one sample interval after capture: the model is not keeping
        # real time, and a live camera would have overwritten it.
        if self.realtime and time.time() - frame.ts > 1.0 / self.config.sample_fps:
            meter.dropped()

    def quality_windows(self) -> list[dict[str, Any]]:
        """Each model's figures since the previous call (protocol.up.ModelQuality); meters of models
        that no longer run are dropped once they have said their last."""
        out = []
        for key, meter in list(self._meters.items()):
            window = meter.window()
            if window is not None:
                out.append(window)
            elif meter is not self.meter and (self.shadow is None or meter is not self.shadow.meter):
                self._meters.pop(key, None)
        return out

    # -- the source ----------------------------------------------------------------

    def _frames(self) -> Iterator[Frame]:
        """Frames with wall-clock stamps; file and synthetic sources paced and looped; a failed
        source is a fault and is opened again with backoff."""
        round_, wait = 0, RETRY_S[0]
        while not self._stop.is_set():
            spec = self.source_spec
            if spec.startswith("synthetic:") and round_:
                spec += f",seed={round_}" if "seed=" not in spec else ""
            live = spec.startswith(("rtsp://", "rtsps://", "usb:"))
            got = 0
            try:
                src = open_source(spec)
                t0 = time.time()
                try:
                    for frame in src:
                        if self._stop.is_set():
                            return
                        got += 1
                        if got == 1:
                            self._fault("camera", None)
                            wait = RETRY_S[0]
                        if live:
                            yield frame
                            continue
                        ts = t0 + frame.ts
                        if self.realtime:
                            delay = ts - time.time()
                            if delay > 0 and self._stop.wait(delay):
                                return
                        yield replace(frame, ts=ts)
                finally:
                    src.close()
                if not got:
                    raise VisionError("source_unreadable", f"{spec}: no frame could be decoded")
            except VisionError as exc:
                self._fault("camera", str(exc))
                if self._stop.wait(wait):
                    return
                wait = min(RETRY_S[1], wait * 2)
                continue
            round_ += 1
            if not live and not self.loop_source:
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
                if self._pending_shadow is not None:
                    self._apply_shadow()
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
        except Exception as exc:  # a bug, not bad input: say so, and keep the agent up
            if self.meter is not None:
                self.meter.crashed()
            self._fault("camera", f"{type(exc).__name__}: {exc}")
            log.exception("camera thread failed")
