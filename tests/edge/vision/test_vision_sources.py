import time

import numpy as np
import pytest

from edge.vision.errors import VisionError
from edge.vision.sources import open_source
from edge.vision.synthetic import SceneParams, SyntheticScene

SPEC = "seed=5,width=160,height=96,fps=10,people=1,vehicles=1,duration=3"


def test_synthetic_source_yields_deterministic_frames_with_media_time():
    with open_source(f"synthetic:{SPEC}") as a, open_source(f"synthetic:{SPEC}") as b:
        fa, fb = list(a), list(b)
    assert len(fa) == 30
    assert [f.index for f in fa] == list(range(30))
    assert fa[10].ts == pytest.approx(1.0)
    assert fa[0].image.shape == (96, 160, 3) and fa[0].image.dtype == np.uint8
    assert all(np.array_equal(x.image, y.image) for x, y in zip(fa, fb, strict=True))


def test_file_source_reads_back_a_video_written_by_videowriter(tmp_path):
    scene = SyntheticScene(SceneParams.parse(SPEC))
    path = scene.write_video(tmp_path / "scene.mp4")
    with open_source(str(path)) as src:
        frames = list(src)
        assert src.fps == pytest.approx(10.0)
    assert len(frames) == scene.n_frames
    assert frames[0].image.shape == (96, 160, 3)
    # Lossy codec: close to the rendered frame, not equal.
    diff = np.abs(frames[5].image.astype(int) - scene.render(5).astype(int)).mean()
    assert diff < 12


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(VisionError) as err:
        open_source(str(tmp_path / "nope.mp4"))
    assert err.value.reason == "source_missing"


def test_dead_rtsp_stream_fails_within_the_timeout():
    started = time.monotonic()
    with pytest.raises(VisionError) as err:
        open_source("rtsp://127.0.0.1:9/none", timeout_s=1.0)
    assert err.value.reason == "stream_unavailable"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("spec", ["synthetic:seed=x", "synthetic:bogus=1", "usb:front"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(VisionError) as err:
        open_source(spec)
    assert err.value.reason == "bad_spec"


def test_ground_truth_lists_every_visible_object_as_an_event(tmp_path):
    scene = SyntheticScene(SceneParams.parse("seed=2,width=320,height=180,people=3,vehicles=2,duration=40"))
    events = scene.events()
    assert {e.label for e in events} == {"person", "vehicle"}
    for e in events:
        boxes = [b for i in range(e.first_frame, e.last_frame + 1) for b in scene.boxes(i)]
        assert any(b.track_id == e.track_id for b in boxes)
    gt = scene.write_ground_truth(tmp_path / "gt.json").read_text()
    assert '"events"' in gt and '"frames"' in gt
