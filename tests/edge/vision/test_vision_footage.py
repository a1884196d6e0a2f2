"""The shipped pipeline on short cuts of real footage (tests/footage: Intel IoT DevKit sample videos,
CC BY 4.0), scored one event per object against the hand ground truth (tests/footage/ground_truth.json).

Measured when written, with the agent's default detection settings: fp32 2/2 cars, 3/3 shoppers,
0 events on the table where only a hand moves; int8 the same on AMD EPYC, 2/3 shoppers on an Intel Xeon (AVX512-VNNI); the built-in detector labels
everything "motion" and raises 5-6 motion events for the hand. The full clips are in bench/edge.
"""

import pytest

from edge.agent.camera import build_detector
from edge.vision.config import DetectionConfig
from edge.vision.evaluate import score_events
from edge.vision.footage import load_clips
from edge.vision.pipeline import Pipeline
from edge.vision.sources import open_source
from protocol.images import INLINE_THUMBNAIL_MAX_BYTES
from tests.edge.detector_models import default_model

CLIPS = load_clips("tests/footage")


def _events(name: str, model, config: dict | None = None):
    cfg = DetectionConfig.from_dict(config or {})  # the agent's defaults
    pipe = Pipeline(cfg, build_detector(cfg, model))
    with open_source(str(CLIPS[name].path)) as src:
        events = list(pipe.run(src))
    return pipe, [e for e in events if e.end is not None], len([e for e in events if e.end is None])


def test_the_cuts_and_their_ground_truth_are_there():
    assert set(CLIPS) == {"car-two-cars.mp4", "store-aisle.mp4", "bottle-hand.mp4"}
    assert [len(c.objects) for c in CLIPS.values()] == [2, 3, 0]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
@pytest.mark.parametrize("name", ["car-two-cars.mp4", "store-aisle.mp4"])
def test_default_detector_reports_one_event_per_object_with_the_right_label(name, variant):
    pipe, done, starts = _events(name, default_model(variant))
    score = score_events(done, CLIPS[name].objects)
    assert (score.precision, score.label_accuracy) == (1.0, 1.0), done  # no false event, no wrong label
    # fp32 finds every object. The int8 build's results depend on the CPU ONNX Runtime picks its
    # int8 kernels for: on the AMD EPYC machines of the first runs it found all three shoppers of
    # the store cut, on an Intel Xeon with AVX512-VNNI it misses one; bench/edge measures both.
    assert score.recall == 1.0 if variant == "fp32" else score.recall >= 0.6, done
    assert len(done) == starts  # one start and one end report each
    if variant == "fp32":
        assert len(done) == len(CLIPS[name].objects)
    for event in done:
        # A thumbnail of the object, small enough to ride inline in the end report.
        assert event.thumbnail and len(event.thumbnail) <= INLINE_THUMBNAIL_MAX_BYTES
        _, _, w, h = event.bbox
        assert 0.05 < w < 0.5 and 0.1 < h < 0.9  # a car or a person, not the frame
    assert pipe.stats.frames_detected <= pipe.stats.frames_sampled


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_a_hand_moving_bottles_is_no_person(variant):
    pipe, done, _ = _events("bottle-hand.mp4", default_model(variant))
    assert done == []
    assert pipe.stats.frames_detected > 0  # the hand opened the gate: the detector looked


def test_builtin_detector_says_motion_not_what_moved():
    _, done, _ = _events("bottle-hand.mp4", None, {"detector": "builtin"})
    assert done and {e.label for e in done} == {"motion"}
    _, done, _ = _events("store-aisle.mp4", None, {"detector": "builtin"})
    assert done and {e.label for e in done} == {"motion"}
