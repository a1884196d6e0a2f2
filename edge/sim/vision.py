"""Real detection for simulated cameras: the agent's own pipeline on real footage, one detector for all.

A camera "watches" a clip (bundled real footage) in episodes: one pass of the clip seen through
the camera's own view (mirrored or not, its own brightness), through a fresh `Pipeline` with the
agent's detection defaults (5 fps sampling, motion gate, NanoDet-g, tracker, event builder with
thumbnails). Between episodes its scene is empty: a real camera's motion gate would keep the
detector off there, so those frames are not rendered or processed at all.

CPU is the budget: every camera shares one ONNX Runtime session (one copy of the weights) and
one worker thread, so 50 cameras cost what their episodes cost, never more than one core. The
worker runs an episode faster than real time; the camera publishes each event report at the
wall-clock time its frames stand for (`Episode.events` carry those times).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2

from edge.vision.config import DetectionConfig
from edge.vision.events import DetectionEvent
from edge.vision.pipeline import Pipeline
from edge.vision.sources import open_source

# A simulated camera keeps no clips (it answers upload_clip "failed"): encoding them costs CPU.
SIM_DETECTION = {"clip_keep": False}


@dataclass(frozen=True)
class View:
    """How one camera sees a clip: mirrored or not, brighter or darker."""

    mirror: bool = False
    gain: float = 1.0


@dataclass(frozen=True)
class Episode:
    events: list[DetectionEvent]  # start and end reports, stamped in wall-clock seconds
    duration_s: float  # media seconds of the clip
    frames_sampled: int
    frames_detected: int  # sampled frames the detector ran on (the rest the motion gate skipped)
    inference_ms: float  # mean detector time per run
    cpu_s: float  # worker CPU time of the whole episode


class SharedVision:
    """One detector and `workers` threads that run episodes for every simulated camera."""

    def __init__(
        self, *, model_path: str | Path, detection: Mapping[str, Any] | None = None, workers: int = 1
    ) -> None:
        from edge.vision.onnx_detector import OnnxDetector  # onnxruntime is heavy: only when used

        self.config = DetectionConfig.from_dict({**SIM_DETECTION, **(detection or {})})
        self.detector = OnnxDetector(
            model_path,
            labels=sorted(self.config.labels) or None,
            min_score=self.config.min_score,
            min_scores=self.config.min_scores,
            threads=1,
        )
        self.detector.self_test()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="sim-vision")
        self._lock = threading.Lock()
        self.episodes = self.events = self.frames_detected = 0
        self.cpu_s = 0.0

    def submit(self, clip: Path, *, view: View, start: float) -> Future[Episode]:
        """Run one episode of `clip` on the worker; `start`: the wall-clock time of its first frame."""
        return self._pool.submit(self.episode, clip, view=view, start=start)

    def episode(self, clip: Path, *, view: View, start: float) -> Episode:
        cpu0 = time.thread_time()
        pipeline = Pipeline(self.config, self.detector)
        events: list[DetectionEvent] = []
        duration = 0.0
        with open_source(str(clip)) as source:
            for frame in source:
                image = cv2.flip(frame.image, 1) if view.mirror else frame.image
                if view.gain != 1.0:
                    image = cv2.convertScaleAbs(image, alpha=view.gain)
                duration = frame.ts
                events += pipeline.process(replace(frame, ts=start + frame.ts, image=image))
        events += pipeline.flush()
        stats = pipeline.stats
        episode = Episode(
            events=events,
            duration_s=duration,
            frames_sampled=stats.frames_sampled,
            frames_detected=stats.frames_detected,
            inference_ms=stats.inference_ms,
            cpu_s=time.thread_time() - cpu0,
        )
        with self._lock:
            self.episodes += 1
            self.events += sum(e.end is not None for e in events)
            self.frames_detected += stats.frames_detected
            self.cpu_s += episode.cpu_s
        return episode

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
