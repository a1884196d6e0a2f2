"""Scoring detected events against a synthetic scene's ground-truth events (tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.vision.events import DetectionEvent
from edge.vision.synthetic import GtEvent


@dataclass(frozen=True)
class EventScore:
    gt_events: int
    detected_events: int
    matched_gt: int  # ground-truth events with at least one detected event (same label, overlapping)
    true_detections: int  # detected events that overlap some ground-truth event of their label
    recall: float
    precision: float
    fragmentation: float  # detected events per matched ground-truth event (1.0: one each)


def score_events(
    detected: Sequence[DetectionEvent], truth: Sequence[GtEvent], *, slack_s: float = 0.5
) -> EventScore:
    """Match by time overlap (with `slack_s` either side) and equal label; finished events only."""
    done = [d for d in detected if d.end is not None]

    def overlaps(d: DetectionEvent, g: GtEvent) -> bool:
        end = d.end if d.end is not None else d.start
        return d.label == g.label and d.start <= g.end + slack_s and end >= g.start - slack_s

    matched = sum(any(overlaps(d, g) for d in done) for g in truth)
    true_det = sum(any(overlaps(d, g) for g in truth) for d in done)
    return EventScore(
        gt_events=len(truth),
        detected_events=len(done),
        matched_gt=matched,
        true_detections=true_det,
        recall=matched / len(truth) if truth else 1.0,
        precision=true_det / len(done) if done else 1.0,
        fragmentation=true_det / matched if matched else 0.0,
    )
