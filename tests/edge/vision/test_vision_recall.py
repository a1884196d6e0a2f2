"""End-to-end: synthetic scene -> pipeline -> events, scored against the scene's ground truth.

The built-in motion detector finds what moves and labels it "motion", so it is scored by time
alone (the scene's people and vehicles are drawn shapes, which the pretrained default model is
not for: real footage is in test_vision_footage). The thresholds leave room for one miss or one
false event in this short 6-event scene.
"""

import pytest

from edge.vision.detectors import MotionBlobDetector
from edge.vision.evaluate import score_events
from edge.vision.pipeline import Pipeline
from edge.vision.synthetic import SceneParams, SyntheticScene

SPEC = "seed=11,width=320,height=180,fps=10,people=4,vehicles=2,duration=45,light_steps=1"


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(SceneParams.parse(SPEC))


def test_builtin_pipeline_recalls_the_ground_truth_events(scene):
    pipe = Pipeline({"detector": "builtin", "sample_fps": 5}, MotionBlobDetector())
    events = list(pipe.run(scene.frames()))
    assert {e.label for e in events} == {"motion"}
    score = score_events(events, scene.events(), by_label=False)
    assert score.gt_events == 6
    assert score.recall >= 0.8
    assert score.precision >= 0.8
    stats = pipe.stats
    # The gate skipped the idle stretches: the detector ran on fewer frames than were sampled.
    assert stats.frames_detected < stats.frames_sampled
    assert stats.fps > 0 and stats.inference_ms > 0
