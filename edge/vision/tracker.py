"""Tracker: one track per object across frames, matched by overlap with a motion prediction.

A track is confirmed after `min_hits` matched frames (one-frame blips are noise) and lost when
it has gone `max_gap_s` seconds of frame time without a match, so an object that stands still,
turns or is hidden for a moment keeps its track. Frames on which the detector did not run do
not count as misses: only time does.
"""

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
    confirmed: bool = False
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre, pixels per second
    labels: Counter = field(default_factory=Counter)  # label -> summed score
    best_score: float = 0.0
    first_ts: float = 0.0  # time of the first detection
    last_ts: float = 0.0  # time of the last matched detection
    first_box: Box = (0.0, 0.0, 0.0, 0.0)
    moved: bool = False  # the object itself moved (edge.vision.evidence)
    whole: bool = False  # seen clear of the top and side edges at least once (edge.vision.evidence)
    motion_hits: int = 0  # matched frames with foreground inside the box
    matched: bool = False  # matched in the latest update

    @property
    def label(self) -> str:
        """The label with the most score behind it: a detector may flicker between labels."""
        return self.labels.most_common(1)[0][0]

    def predicted(self, ts: float) -> Box:
        x, y, w, h = self.box
        dt = max(0.0, ts - self.last_ts)  # at most max_gap_s: older tracks are gone
        return (x + self.velocity[0] * dt, y + self.velocity[1] * dt, w, h)


@dataclass(frozen=True)
class TrackUpdate:
    confirmed: list[Track]  # became confirmed in this update
    active: list[Track]  # confirmed and matched in this update
    lost: list[Track]  # confirmed tracks dropped in this update (unseen for max_gap_s)


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


def inside_share(a: Box, b: Box) -> float:
    """The share of box a's area that lies inside box b."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / max(a[2] * a[3], 1e-9)


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
    def __init__(
        self, *, iou_threshold: float = 0.2, min_hits: int = 3, max_gap_s: float = 2.0, absorb: float = 0.6
    ) -> None:
        self.iou_threshold = iou_threshold
        self.min_hits = max(1, min_hits)
        self.max_gap_s = max_gap_s
        # An unmatched detection lying this much inside a live track's box of its label is a second
        # box on the same object (a head, a torso), not a new object: it starts no track of its own.
        self.absorb = absorb
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, detections: list[Detection], *, ts: float) -> TrackUpdate:
        """One frame on which the detector ran."""
        preds = [t.predicted(ts) for t in self.tracks]
        boxes = [d.box for d in detections]
        # Where the motion says it is, or where it was last: people stop walking, cars park.
        ious = np.maximum(iou_matrix(preds, boxes), iou_matrix([t.box for t in self.tracks], boxes))
        # Fallback for a fast mover seen once (a car entering the frame grows and jumps; its
        # speed is not known yet): centres within one box size still match, ranked below any real
        # overlap. A track with a known velocity is predicted, so it needs no fallback; giving it
        # one would hand a still person's track to a neighbour when the person is missed.
        fresh = np.array([[t.hits == 1] for t in self.tracks], float).reshape(-1, 1)
        near = _near_matrix(preds, boxes) * fresh
        sim = np.where(ious >= self.iou_threshold, ious, 0.99 * self.iou_threshold * near)
        if sim.size:
            same = np.array([[t.label == d.label for d in detections] for t in self.tracks], bool)
            sim = np.where(same, sim, 0.0)  # a person never continues a vehicle's track
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        # Greedy by descending similarity: optimal enough for sparse scenes, O(n*m log nm).
        for flat in np.argsort(-sim, axis=None):
            ti, di = divmod(int(flat), sim.shape[1])
            if sim[ti, di] <= 0:
                break
            if ti in matched_t or di in matched_d:
                continue
            matched_t.add(ti)
            matched_d.add(di)
            self._match(self.tracks[ti], detections[di], ts)
        for i, track in enumerate(self.tracks):
            track.matched = i in matched_t
        newly, lost, kept = [], [], []
        for track in self.tracks:
            if ts - track.last_ts > self.max_gap_s:
                if track.confirmed:
                    lost.append(track)
                continue
            if not track.confirmed and track.hits >= self.min_hits:
                track.confirmed = True
                newly.append(track)
            kept.append(track)
        live = [(t.label, t.box) for t in kept]
        for di, det in enumerate(detections):
            if di in matched_d or any(
                label == det.label and inside_share(det.box, box) >= self.absorb for label, box in live
            ):
                continue
            track = self._new_track(det, ts)
            kept.append(track)
            if self.min_hits <= 1:
                track.confirmed = True
                newly.append(track)
        self.tracks = kept
        active = [t for t in self.tracks if t.confirmed and t.matched]
        return TrackUpdate(newly, active, lost)

    def expire(self, ts: float) -> list[Track]:
        """A frame without detection: drop tracks unseen for max_gap_s; returns the confirmed ones."""
        lost = [t for t in self.tracks if ts - t.last_ts > self.max_gap_s]
        self.tracks = [t for t in self.tracks if ts - t.last_ts <= self.max_gap_s]
        for t in self.tracks:
            t.matched = False
        return [t for t in lost if t.confirmed]

    def flush(self) -> list[Track]:
        """End of stream: every confirmed track is lost."""
        lost = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return lost

    def _new_track(self, det: Detection, ts: float) -> Track:
        track = Track(
            self._next_id,
            det.box,
            det.score,
            best_score=det.score,
            first_ts=ts,
            last_ts=ts,
            first_box=det.box,
            matched=True,
        )
        track.labels[det.label] += det.score
        self._next_id += 1
        return track

    @staticmethod
    def _match(track: Track, det: Detection, ts: float) -> None:
        ox, oy, ow, oh = track.box
        nx, ny, nw, nh = det.box
        dt = max(ts - track.last_ts, 1e-3)
        shift = ((nx + nw / 2 - ox - ow / 2) / dt, (ny + nh / 2 - oy - oh / 2) / dt)
        # Smooth the velocity after the first step: boxes jitter as limbs swing.
        a = 0.5 if track.hits > 1 else 1.0
        vx, vy = track.velocity
        track.velocity = ((1 - a) * vx + a * shift[0], (1 - a) * vy + a * shift[1])
        track.box = det.box
        track.score = det.score
        track.best_score = max(track.best_score, det.score)
        track.hits += 1
        track.last_ts = ts
        track.labels[det.label] += det.score
