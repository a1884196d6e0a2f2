"""Motion gate: background subtraction so the detector only runs when something moves."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class MotionResult:
    open: bool
    fraction: float  # share of the (work-size) frame that is foreground
    mask: np.ndarray  # uint8 0/255 at work size; map to the frame with `scale`
    scale: float  # frame pixels per mask pixel
    relearned: bool = False  # a global change (lights, camera moved) reset the background


class MotionGate:
    """MOG2 on a small colour frame, normalised for global brightness.

    Robustness: each frame's median grey level is scaled to a constant before subtraction, so
    slow drift and sudden global light steps do not look like motion; noise is removed by a
    blur and a morphological opening. A frame that is still mostly foreground after that is
    treated as a scene change: the background is relearned and the gate stays closed.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.002,
        work_width: int = 320,
        history: int = 300,
        var_threshold: float = 25.0,
        warmup_frames: int = 5,
        relearn_fraction: float = 0.45,
        light_step: float = 0.08,
    ) -> None:
        self.threshold = threshold
        self.work_width = work_width
        self.warmup_frames = warmup_frames
        self.relearn_fraction = relearn_fraction
        self.step_log = float(np.log1p(light_step))  # median change between frames that is a step
        self._last_median = 0.0
        self._mog = cv2.createBackgroundSubtractorMOG2(
            history=history, varThreshold=var_threshold, detectShadows=False
        )
        self._open_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 7))
        self.frames = 0
        self.opened = 0

    @property
    def open_ratio(self) -> float:
        """Share of frames seen so far on which the gate was open."""
        return self.opened / self.frames if self.frames else 0.0

    @property
    def warm(self) -> bool:
        """Past the warm-up frames: the mask shows motion, not the background being learned."""
        return self.frames > self.warmup_frames

    def update(self, image: np.ndarray) -> MotionResult:
        h, w = image.shape[:2]
        scale = w / self.work_width if w > self.work_width else 1.0
        small = cv2.resize(image, (round(w / scale), round(h / scale)), interpolation=cv2.INTER_AREA)
        # Colour, not grey: a red car on a grey road can have the road's grey level.
        median = float(np.median(cv2.cvtColor(small[::4, ::4], cv2.COLOR_BGR2GRAY))) or 1.0
        norm = cv2.GaussianBlur(cv2.convertScaleAbs(small, alpha=128.0 / median), (5, 5), 0)
        # A sudden global step (lights, auto-exposure) clips bright and dark areas unevenly, which
        # normalisation cannot undo: relearn the background from this frame instead.
        jump = self._last_median > 0 and abs(np.log(median / self._last_median)) > self.step_log
        self._last_median = median
        mask = self._mog.apply(norm, learningRate=1.0 if jump else -1)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open_k)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close_k)
        fraction = float(np.count_nonzero(mask)) / mask.size
        self.frames += 1
        relearned = bool(jump)
        if fraction > self.relearn_fraction and self.frames > self.warmup_frames:
            self._mog.apply(norm, learningRate=1.0)
            relearned = True
        is_open = not relearned and self.frames > self.warmup_frames and fraction >= self.threshold
        self.opened += is_open
        return MotionResult(is_open, fraction, mask, scale, relearned)
