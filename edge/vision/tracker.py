"""IoU tracker: greedy matching of detections to constant-velocity predictions of live tracks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from edge.vision.detectors import Detection

Box = tuple[float, float, float, float]


@dataclass
class Track:
    track_id: int
    box: Box  # last matched box, frame pixels
    score: float  # last matched score
    hits: int = 1
    missed: int = 0  # consecutive updates without a match
    confirmed: bool = False
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre shift per update
    labels: Counter = field(default_factory=Counter)  # label -> summed score
    best_score: float = 0.0
    first_ts: float = 0.0  # time of the first detection
    last_ts: float = 0.0  # time of the last matched detection

    @property
    def label(self) -> str:
        """The label with the most score behind it: a blob labeller may flicker frame to frame."""
        return self.labels.most_common(1)[0][0]

    def predicted(self) -> Box:
        x, y, w, h = self.box
        steps = self.missed + 1
        return (x + self.velocity[0] * steps, y + self.velocity[1] * steps, w, h)


@dataclass(frozen=True)
class TrackUpdate:
    confirmed: list[Track]  # became confirmed in this update
    active: list[Track]  # confirmed and matched in this update
    lost: list[Track]  # confirmed tracks dropped in this update (missed > max_age)


def iou_matrix(a: list[Box], b: list[Box]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    A, B = np.asarray(a, float)[:, None, :], np.asarray(b, float)[None, :, :]
    ix = np.clip(
        np.minimum(A[..., 0] + A[..., 2], B[..., 0] + B[..., 2]) - np.maximum(A[..., 0], B[..., 0]), 0, None
    )
    iy = np.clip(
        np.minimum(A[..., 1] + A[..., 3], B[..., 1] + B[..., 3]) - np.maximum(A[..., 1], B[..., 1]), 0, None
    )
    inter = ix * iy
    union = A[..., 2] * A[..., 3] + B[..., 2] * B[..., 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _near_matrix(a: list[Box], b: list[Box]) -> np.ndarray:
    """1 - centre distance / larger side of the pair, floored at 0; same-scale pairs only."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    A, B = np.asarray(a, float)[:, None, :], np.asarray(b, float)[None, :, :]
    dx = (A[..., 0] + A[..., 2] / 2) - (B[..., 0] + B[..., 2] / 2)
    dy = (A[..., 1] + A[..., 3] / 2) - (B[..., 1] + B[..., 3] / 2)
    reach = np.maximum(np.maximum(A[..., 2], A[..., 3]), np.maximum(B[..., 2], B[..., 3]))
    area_a, area_b = A[..., 2] * A[..., 3], B[..., 2] * B[..., 3]
    same_scale = np.minimum(area_a, area_b) >= 0.25 * np.maximum(area_a, area_b)
    near = 1.0 - np.hypot(dx, dy) / np.maximum(reach, 1e-9)
    return np.where(same_scale, np.clip(near, 0.0, 1.0), 0.0)


class IouTracker:
    def __init__(self, *, iou_threshold: float = 0.2, min_hits: int = 2, max_age: int = 5) -> None:
        self.iou_threshold = iou_threshold
        self.min_hits = min_hits  # matches needed before a track is real (one-frame blips are noise)
        self.max_age = max_age  # updates a track may go unmatched before it is lost
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, detections: list[Detection], *, ts: float = 0.0) -> TrackUpdate:
        preds = [t.predicted() for t in self.tracks]
        boxes = [d.box for d in detections]
        ious = iou_matrix(preds, boxes)
        # Fallback for fast movers (a car entering the frame grows and jumps): centres within
        # one box size still match, ranked below any real overlap.
        near = _near_matrix(preds, boxes)
        sim = np.where(ious >= self.iou_threshold, ious, 0.99 * self.iou_threshold * near)
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        # Greedy by descending IoU: optimal enough for sparse scenes, O(n*m log nm).
        for flat in np.argsort(-sim, axis=None):
            ti, di = divmod(int(flat), sim.shape[1])
            if sim[ti, di] <= 0:
                break
            if ti in matched_t or di in matched_d:
                continue
            matched_t.add(ti)
            matched_d.add(di)
            self._match(self.tracks[ti], detections[di], ts)
        newly, lost, kept = [], [], []
        for i, track in enumerate(self.tracks):
            if i not in matched_t:
                track.missed += 1
            if track.missed > self.max_age:
                if track.confirmed:
                    lost.append(track)
                continue
            if not track.confirmed and track.hits >= self.min_hits:
                track.confirmed = True
                newly.append(track)
            kept.append(track)
        for di, det in enumerate(detections):
            if di not in matched_d:
                kept.append(self._new_track(det, ts))
        self.tracks = kept
        if self.min_hits <= 1:
            for track in kept:
                if not track.confirmed:
                    track.confirmed = True
                    newly.append(track)
        active = [t for t in self.tracks if t.confirmed and t.missed == 0]
        return TrackUpdate(newly, active, lost)

    def flush(self) -> list[Track]:
        """End of stream: every confirmed track is lost."""
        lost = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return lost

    def _new_track(self, det: Detection, ts: float) -> Track:
        track = Track(self._next_id, det.box, det.score, best_score=det.score, first_ts=ts, last_ts=ts)
        track.labels[det.label] += det.score
        self._next_id += 1
        return track

    @staticmethod
    def _match(track: Track, det: Detection, ts: float) -> None:
        ox, oy, ow, oh = track.box
        nx, ny, nw, nh = det.box
        steps = track.missed + 1
        shift = ((nx + nw / 2 - ox - ow / 2) / steps, (ny + nh / 2 - oy - oh / 2) / steps)
        # Smooth the velocity after the first step: blob boxes jitter as limbs swing.
        a = 0.5 if track.hits > 1 else 1.0
        vx, vy = track.velocity
        track.velocity = ((1 - a) * vx + a * shift[0], (1 - a) * vy + a * shift[1])
        track.box = det.box
        track.score = det.score
        track.best_score = max(track.best_score, det.score)
        track.hits += 1
        track.missed = 0
        track.last_ts = ts
        track.labels[det.label] += det.score
