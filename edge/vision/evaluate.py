"""Scoring detected events against ground truth, one event per object (tests and benchmarks).

Ground truth is a list of objects, each with a label and the interval it is in view (a synthetic
scene's GtEvents, or the hand-made intervals of real footage). Each object may be matched by
at most one event and each event by at most one object: greedy by time overlap, longest first.
A second event on the same object is not matched, so it counts against precision. Matching is
by time and, when `by_label`, by label; `label_accuracy` is the share of matched events whose
label is the object's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from edge.vision.events import DetectionEvent


class TruthObject(Protocol):
    label: str
    start: float
    end: float


@dataclass(frozen=True)
class GtObject:
    label: str
    start: float
    end: float


@dataclass(frozen=True)
class EventScore:
    gt_events: int
    detected_events: int  # finished events
    matched_gt: int  # objects matched by an event
    true_detections: int  # events matched to an object
    recall: float
    precision: float
    fragmentation: float  # events overlapping some object, per matched object (1.0: one each)
    label_accuracy: float  # matched events with the object's label


def score_events(
    detected: Sequence[DetectionEvent],
    truth: Sequence[TruthObject],
    *,
    slack_s: float = 0.5,
    by_label: bool = True,
) -> EventScore:
    """Finished events only; intervals overlap when they meet within `slack_s`."""
    done = [d for d in detected if d.end is not None]

    def overlap(d: DetectionEvent, g: TruthObject) -> float:
        if by_label and d.label != g.label:
            return -1.0
        end = d.end if d.end is not None else d.start
        return min(end, g.end + slack_s) - max(d.start, g.start - slack_s)

    pairs = sorted(
        ((overlap(d, g), di, gi) for di, d in enumerate(done) for gi, g in enumerate(truth)),
        key=lambda p: -p[0],
    )
    used_d: set[int] = set()
    used_g: set[int] = set()
    right = 0
    for ov, di, gi in pairs:
        if ov < 0:
            break
        if di in used_d or gi in used_g:
            continue
        used_d.add(di)
        used_g.add(gi)
        right += done[di].label == truth[gi].label
    overlapping = sum(any(overlap(d, g) >= 0 for g in truth) for d in done)
    matched = len(used_g)
    return EventScore(
        gt_events=len(truth),
        detected_events=len(done),
        matched_gt=matched,
        true_detections=len(used_d),
        recall=matched / len(truth) if truth else 1.0,
        precision=len(used_d) / len(done) if done else 1.0,
        fragmentation=overlapping / matched if matched else 0.0,
        label_accuracy=right / matched if matched else 0.0,
    )
