"""Built-in detectors that need no model file, and the interface every detector follows.

- MotionBlobDetector (config `detector: builtin`): contours of the motion gate's foreground
  mask. It finds whatever moves and cannot tell what it is: a hand, a shadow or a swaying
  branch is as much a blob as a person, so every detection is labelled "motion", never
  "person" or "vehicle". Its score is how solid the blob is (contour area / box area).
- HogPeopleDetector: OpenCV's HOG + linear SVM pedestrian detector (Dalal-Triggs, trained on
  INRIA photos). It needs upright people at least ~128 px tall in its 64x128 window (the
  `upscale` option enlarges the frame for smaller people, at a steep CPU cost). Not wired into
  the agent; kept for comparison in bench/edge.

The default detector is the pretrained NanoDet-g model run by edge.vision.onnx_detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from edge.vision.motion import MotionResult


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    score: float  # 0..1
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels


class Detector(Protocol):
    name: str
    needs_motion: bool  # True: detect() reads motion.mask and the gate must run on every frame

    def detect(self, image: np.ndarray, *, motion: MotionResult | None = None) -> list[Detection]: ...


class MotionBlobDetector:
    name = "motion-blob"
    needs_motion = True
    label = "motion"

    def __init__(self, *, min_area: float = 0.0008) -> None:
        self.min_area = min_area  # share of the frame; smaller blobs are noise or leaves

    def detect(self, image: np.ndarray, *, motion: MotionResult | None = None) -> list[Detection]:
        if motion is None:
            return []
        mask = motion.mask
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_px = self.min_area * mask.size
        out = []
        s = motion.scale
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            if w * h < min_px:
                continue
            fill = cv2.contourArea(c) / float(w * h)
            score = float(np.clip(0.5 + 0.5 * fill, 0.0, 1.0))
            out.append(Detection(self.label, score, (x * s, y * s, w * s, h * s)))
        return out


class HogPeopleDetector:
    name = "hog-people"
    needs_motion = False

    def __init__(self, *, upscale: float = 1.0, hit_threshold: float = 0.0, win_stride: int = 8) -> None:
        self.upscale = upscale
        self.hit_threshold = hit_threshold
        self.win_stride = win_stride
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, image: np.ndarray, *, motion: MotionResult | None = None) -> list[Detection]:
        img = image
        if self.upscale != 1.0:
            img = cv2.resize(image, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        boxes, weights = self._hog.detectMultiScale(
            img, hitThreshold=self.hit_threshold, winStride=(self.win_stride,) * 2, scale=1.05
        )
        out = []
        for (x, y, w, h), wt in zip(boxes, np.ravel(weights), strict=True):
            score = float(1.0 / (1.0 + np.exp(-float(wt))))  # SVM margin -> 0..1
            u = self.upscale
            out.append(Detection("person", score, (x / u, y / u, w / u, h / u)))
        return nms(out, 0.45)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def nms(dets: list[Detection], threshold: float) -> list[Detection]:
    """Greedy non-maximum suppression across labels."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: d.score, reverse=True):
        if all(iou(d.box, k.box) < threshold for k in kept):
            kept.append(d)
    return kept
