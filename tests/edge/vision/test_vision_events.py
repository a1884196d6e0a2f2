import cv2
import numpy as np
import pytest

from edge.vision.config import DetectionConfig
from edge.vision.detectors import MotionBlobDetector
from edge.vision.errors import VisionError
from edge.vision.frame import Frame
from edge.vision.pipeline import FrameSampler, Pipeline

W, H = 320, 180


def _walker_frames(n=60, fps=10.0, *, x0=10, y0=100, step=4, color=(40, 40, 220)):
    """A grey textured street and one 12x34 px red 'person' walking right from frame 15 to 40."""
    rng = np.random.default_rng(0)
    base = np.repeat(np.repeat(rng.integers(60, 160, (H // 6, W // 6, 1)), 6, 0), 6, 1).astype(np.uint8)
    base = np.repeat(base, 3, axis=2)
    for i in range(n):
        img = np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)
        if 15 <= i < 40:
            x = x0 + (i - 15) * step
            cv2.rectangle(img, (x, y0), (x + 12, y0 + 34), color, -1)
        yield Frame(ts=i / fps, index=i, image=img)


def _run(config, frames=None):
    pipe = Pipeline(config, MotionBlobDetector(), camera="door", max_age_s=0.6)
    events = list(pipe.run(frames or _walker_frames()))
    return pipe, events


def test_event_has_start_then_end_with_thumbnail_and_clip():
    pipe, events = _run({"sample_fps": 10, "min_score": 0.5, "clip_pre_s": 1.0, "clip_post_s": 1.0})
    starts = [e for e in events if e.end is None]
    ends = [e for e in events if e.end is not None]
    assert len(starts) == 1 and len(ends) == 1
    start, end = starts[0], ends[0]
    assert start.event_id == end.event_id and start.camera == "door" and end.label == "person"
    assert start.thumbnail_jpeg is None and start.clip is None
    assert 1.4 <= end.start <= 1.7 and 3.7 <= end.end <= 4.0
    thumb = cv2.imdecode(np.frombuffer(end.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert max(thumb.shape[:2]) <= 160 and thumb[..., 2].mean() > thumb[..., 0].mean()  # red subject
    assert end.clip[4:8] == b"ftyp"  # an MP4 container
    x, y, w, h = end.bbox
    assert x >= 0 and x + w <= 1 and y >= 0 and y + h <= 1 and 0.04 < w < 0.06
    meta = end.metadata()
    assert {m["kind"] for m in meta["media"]} == {"snapshot", "clip"}
    assert pipe.stats.frames_sampled == 60 and 0 < pipe.stats.gate_open_ratio < 0.6


def test_clip_covers_pre_and_post_roll(tmp_path):
    _, events = _run({"sample_fps": 10, "clip_pre_s": 1.0, "clip_post_s": 1.0})
    (end,) = [e for e in events if e.end is not None]
    path = tmp_path / "clip.mp4"
    path.write_bytes(end.clip)
    cap = cv2.VideoCapture(str(path))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    # ~1 s before the first detection + the event (~2.4 s) + 1 s after the track was lost
    expected = round((end.end - end.start + 2.0) * 10)
    assert abs(frames - expected) <= 8


def test_label_filter_drops_unwanted_labels():
    _, events = _run({"sample_fps": 10, "labels": ["vehicle"]})
    assert events == []


def test_zone_admits_only_objects_standing_in_it():
    left = {"name": "left", "polygon": [[0, 0], [0.3, 0], [0.3, 1], [0, 1]]}
    right = {"name": "right", "polygon": [[0.7, 0], [1, 0], [1, 1], [0.7, 1]]}
    _, events = _run({"sample_fps": 10, "zones": [right, left]})
    assert {e.zone for e in events} == {"left"}
    far = {"name": "far", "polygon": [[0.8, 0], [1, 0], [1, 0.3], [0.8, 0.3]]}
    _, events = _run({"sample_fps": 10, "zones": [far]})
    assert events == []


def test_min_score_above_every_detection_gives_no_event():
    _, events = _run({"sample_fps": 10, "min_score": 0.99})
    assert events == []


@pytest.mark.parametrize(
    "bad",
    [{"min_score": 2}, {"sample_fps": 0}, {"zones": [{"name": "z", "polygon": [[0, 0], [1, 1]]}]}],
)
def test_bad_config_is_refused_with_a_reason(bad):
    with pytest.raises(VisionError) as err:
        DetectionConfig.from_dict(bad)
    assert err.value.reason == "bad_config"


def test_sampler_passes_the_target_rate():
    sampler = FrameSampler(5.0)
    passed = [i for i in range(300) if sampler.accept(i / 30.0)]  # 10 s of 30 fps
    assert len(passed) == 50
