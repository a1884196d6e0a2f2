"""One event per object, on scripted scenes: a detector that reports exactly the drawn boxes, so the
pipeline's tracking and event rules are what is tested (the real model is in test_vision_footage)."""

import numpy as np
import pytest

from edge.vision.detectors import Detection
from edge.vision.frame import Frame
from edge.vision.pipeline import KEEPALIVE_S, Pipeline

W, H, FPS = 320, 180, 5.0
BG = np.repeat(np.repeat(np.random.default_rng(0).integers(60, 160, (H // 6, W // 6, 1)), 6, 0), 6, 1).astype(
    np.uint8
)
BG = np.repeat(BG, 3, axis=2)


class Scripted:
    """Reports the boxes the scene drew on the frame (score 0.9), except where it is told to miss."""

    name = "scripted"
    needs_motion = False

    def __init__(self, scene) -> None:
        self.scene = scene
        self.calls: list[float] = []

    def detect(self, image, *, motion=None):
        ts = self.calls.append(self._ts) or self._ts
        return [Detection(label, 0.9, box) for label, box, seen in self.scene(ts) if seen]


def _run(scene, seconds: float, config: dict | None = None):
    det = Scripted(scene)
    pipe = Pipeline({"sample_fps": FPS, **(config or {})}, det)
    rng = np.random.default_rng(1)
    events = []
    for i in range(int(seconds * FPS)):
        ts = i / FPS
        img = np.clip(BG + rng.normal(0, 2, BG.shape), 0, 255).astype(np.uint8)
        for _, (x, y, w, h), _ in scene(ts):
            img[int(y) : int(y + h), int(x) : int(x + w)] = (40, 40, 220)
        det._ts = ts
        events += pipe.process(Frame(ts=ts, index=i, image=img))
    events += pipe.flush()
    return pipe, det, [e for e in events if e.end is not None]


def _walker(t0: float, t1: float, *, still=(None, None), hidden=(None, None), y=60.0, label="person"):
    """A 16x40 box walking right at 30 px/s in [t0, t1], standing still in `still`, unseen by the
    detector (still drawn) in `hidden`."""

    def at(ts: float):
        if not t0 <= ts <= t1:
            return []
        walk = ts - t0
        if still[0] is not None and ts > still[0]:
            walk -= min(ts, still[1]) - still[0]
        seen = not (hidden[0] is not None and hidden[0] <= ts <= hidden[1])
        return [(label, (10 + 30 * walk, y, 16, 40), seen)]

    return at


def _both(*scenes):
    return lambda ts: [o for s in scenes for o in s(ts)]


def test_a_person_who_stands_still_stays_one_event_and_the_detector_keeps_looking():
    pipe, det, done = _run(_walker(0.0, 70.0, still=(2.0, 66.0)), 75)
    assert len(done) == 1
    assert done[0].start <= 1.0 and done[0].end >= 69.0
    # Standing still for a minute: the gate closed, yet the detector ran at least every KEEPALIVE_S.
    assert pipe.stats.gate_open_ratio < 0.9 and pipe.stats.frames_detected < pipe.stats.frames_sampled
    gaps = np.diff([t for t in det.calls if 2.0 < t < 66.0])
    assert gaps.max() <= KEEPALIVE_S + 1e-6


def test_a_person_hidden_for_a_moment_or_turning_is_still_one_event():
    _, _, done = _run(_walker(0.0, 8.0, hidden=(3.0, 4.4)), 12)
    assert len(done) == 1 and done[0].end >= 7.5


def test_a_new_object_after_the_first_left_is_a_new_event():
    scene = _both(_walker(0.0, 4.0), _walker(8.0, 12.0))
    _, _, done = _run(scene, 15)
    assert len(done) == 2 and done[0].end < done[1].start


def test_two_people_side_by_side_are_two_events():
    scene = _both(_walker(0.0, 6.0, y=20), _walker(0.0, 6.0, y=110))
    _, _, done = _run(scene, 9)
    assert len(done) == 2


def test_something_that_never_moves_is_no_event():
    furniture = lambda ts: [("tv", (200.0, 40.0, 60.0, 40.0), True)]  # noqa: E731
    _, det, done = _run(_both(furniture, _walker(0.0, 5.0)), 8)
    assert [e.label for e in done] == ["person"] and det.calls


def test_an_arm_reaching_in_from_the_top_edge_is_no_event():
    arm = lambda ts: [("person", (100.0 + 10 * ts, 0.0, 40.0, 60.0 + 5 * ts), True)] if ts < 5 else []  # noqa: E731
    _, _, done = _run(arm, 8)
    assert done == []


def test_an_object_is_confirmed_after_confirm_frames_and_ends_after_end_after_s():
    one_frame = lambda ts: [("person", (100.0, 60.0, 16.0, 40.0), True)] if ts == 1.0 else []  # noqa: E731
    _, _, done = _run(_both(one_frame, _walker(3.0, 6.0)), 12, {"confirm_frames": 3, "end_after_s": 2.0})
    assert len(done) == 1 and done[0].start >= 3.0  # the one-frame blip never became an event
    _, _, split = _run(_walker(0.0, 8.0, hidden=(3.0, 4.4)), 12, {"end_after_s": 1.0})
    assert len(split) == 2  # a gap longer than end_after_s ends the event


@pytest.mark.parametrize("labels", [["person"], []])
def test_label_filter_applies_to_tracks(labels):
    _, _, done = _run(_walker(0.0, 5.0, label="vehicle"), 8, {"labels": labels})
    assert len(done) == (0 if labels else 1)
