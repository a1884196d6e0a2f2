"""The detection pipeline: sampler -> motion gate -> detector -> tracker -> event builder.

The motion gate saves CPU: the detector runs on frames where something moved. It is never the
only judge: while any track is live the detector also runs at least every KEEPALIVE_S, so a
person who stands still keeps their track (and event) open, and one who left is let go.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from edge.vision.config import DetectionConfig
from edge.vision.detectors import Detection, Detector
from edge.vision.events import DetectionEvent, EventBuilder
from edge.vision.evidence import observe
from edge.vision.frame import Frame
from edge.vision.motion import MotionGate
from edge.vision.tracker import IouTracker, TrackUpdate

STAGES = ("motion", "detect", "track", "events")
KEEPALIVE_S = 1.0  # < the config's end_after_s, so a still object is seen again before it expires


class FrameSampler:
    """Passes frames at most `fps` times per second of frame time, whatever the source rate."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._next: float | None = None

    def accept(self, ts: float) -> bool:
        if self._next is not None and ts < self._next - 1e-6:
            return False
        # Stay on the grid, but do not burst to catch up after a stall or a clock jump.
        behind = self._next is None or ts - self._next > self.interval
        self._next = (ts if behind else self._next) + self.interval
        return True


@dataclass(frozen=True)
class PipelineStats:
    frames_in: int
    frames_sampled: int
    frames_detected: int  # sampled frames on which the detector ran
    gate_open_ratio: float
    fps: float  # sampled frames processed per second of processing time
    inference_ms: float  # mean detector time per run
    stage_ms: dict[str, float]  # mean time per sampled frame, by stage


class Pipeline:
    def __init__(
        self,
        config: Mapping[str, Any] | DetectionConfig | None,
        detector: Detector,
        *,
        camera: str = "cam0",
        use_gate: bool = True,
        iou_threshold: float = 0.2,
        clip_width: int = 320,
        clip_max_s: float = 20.0,
        on_detect: Callable[[float, list[Detection], Frame], None] | None = None,
    ) -> None:
        cfg = config if isinstance(config, DetectionConfig) else DetectionConfig.from_dict(config)
        self.config = cfg
        self.detector = detector
        self.camera = camera
        self.use_gate = use_gate
        self.sampler = FrameSampler(cfg.sample_fps)
        self.gate = MotionGate(threshold=cfg.motion_threshold)
        self.tracker = IouTracker(
            iou_threshold=iou_threshold, min_hits=cfg.confirm_frames, max_gap_s=cfg.end_after_s
        )
        self.events = EventBuilder(cfg, camera=camera, clip_width=clip_width, clip_max_s=clip_max_s)
        self._frames_in = self._sampled = self._detected = 0
        self._last_detect = -math.inf
        self._stage_s = dict.fromkeys(STAGES, 0.0)
        # Each detector run: (milliseconds, the detections kept, the frame); model quality telemetry.
        self.on_detect = on_detect

    def set_detector(self, detector: Detector) -> None:
        """Swap the detector (a new model from OTA) without losing tracks or open events."""
        self.detector = detector

    def process(self, frame: Frame) -> list[DetectionEvent]:
        """Feed one frame; returns events that started or finished on it."""
        self._frames_in += 1
        if not self.sampler.accept(frame.ts):
            return []
        self._sampled += 1
        t0 = time.perf_counter()
        motion = self.gate.update(frame.image)
        t1 = time.perf_counter()
        keepalive = bool(self.tracker.tracks) and frame.ts - self._last_detect >= KEEPALIVE_S - 1e-6
        detected = motion.open or not self.use_gate or keepalive
        detections = []
        if detected:
            detections = self.detector.detect(frame.image, motion=motion)
            detections = [d for d in detections if d.score >= self.config.score_floor(d.label)]
            self._detected += 1
            self._last_detect = frame.ts
        t2 = time.perf_counter()
        if detected and self.on_detect is not None:
            self.on_detect(1000.0 * (t2 - t1), detections, frame)
        if detected:
            update = self.tracker.update(detections, ts=frame.ts)
            h, w = frame.image.shape[:2]
            mask = motion if self.gate.warm and not motion.relearned else None
            for track in self.tracker.tracks:
                if track.matched:
                    observe(track, frame_w=w, frame_h=h, motion=mask)
        else:
            update = TrackUpdate([], [], self.tracker.expire(frame.ts))
        t3 = time.perf_counter()
        out = self.events.update(frame, update)
        t4 = time.perf_counter()
        for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            self._stage_s[stage] += dt
        return out

    def flush(self) -> list[DetectionEvent]:
        """End of stream: finish every event in progress."""
        return self.events.flush(self.tracker.flush())

    def run(self, frames: Iterable[Frame]) -> Iterator[DetectionEvent]:
        for frame in frames:
            yield from self.process(frame)
        yield from self.flush()

    @property
    def stats(self) -> PipelineStats:
        total = sum(self._stage_s.values())
        n = max(1, self._sampled)
        return PipelineStats(
            frames_in=self._frames_in,
            frames_sampled=self._sampled,
            frames_detected=self._detected,
            gate_open_ratio=self.gate.open_ratio,
            fps=self._sampled / total if total > 0 else 0.0,
            inference_ms=1000.0 * self._stage_s["detect"] / max(1, self._detected),
            stage_ms={k: 1000.0 * v / n for k, v in self._stage_s.items()},
        )
