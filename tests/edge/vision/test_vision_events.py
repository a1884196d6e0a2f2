import base64
import json

import cv2
import msgspec
import numpy as np
import pytest

from edge.vision.config import DetectionConfig
from edge.vision.detectors import MotionBlobDetector
from edge.vision.errors import VisionError
from edge.vision.events import DetectionEvent, round_box
from edge.vision.frame import Frame
from edge.vision.media import encode_thumbnail
from edge.vision.pipeline import FrameSampler, Pipeline
from protocol.messages import DetectionSettings, Events, decode_up, encode, make

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
    pipe = Pipeline({"end_after_s": 0.6, **config}, MotionBlobDetector(), camera="door")
    events = list(pipe.run(frames or _walker_frames()))
    return pipe, events


def test_event_has_start_then_end_with_thumbnail_and_clip():
    pipe, events = _run({"sample_fps": 10, "min_score": 0.5, "clip_pre_s": 1.0, "clip_post_s": 1.0})
    starts = [e for e in events if e.end is None]
    ends = [e for e in events if e.end is not None]
    assert len(starts) == 1 and len(ends) == 1
    start, end = starts[0], ends[0]
    assert start.event_id == end.event_id and start.camera == "door" and end.label == "motion"
    assert start.thumbnail is None and start.clip is None
    assert 1.4 <= end.start <= 1.7 and 3.7 <= end.end <= 4.0
    assert end.thumbnail_content_type == "image/webp"  # the default format
    thumb = cv2.imdecode(np.frombuffer(end.thumbnail, np.uint8), cv2.IMREAD_COLOR)
    assert max(thumb.shape[:2]) <= 96 and thumb[..., 2].mean() > thumb[..., 0].mean()  # red subject
    assert end.clip[4:8] == b"ftyp" and not end.clip_upload  # an MP4, kept on the device by default
    x, y, w, h = end.bbox
    assert x >= 0 and x + w <= 1 and y >= 0 and y + h <= 1 and 0.04 < w < 0.06
    meta = end.metadata()
    assert [m["kind"] for m in meta["media"]] == ["snapshot"]  # a kept clip is not announced
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
    _, events = _run({"sample_fps": 10, "labels": ["person"]})
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
    [
        {"min_score": 2},
        {"sample_fps": 0},
        {"zones": [{"name": "z", "polygon": [[0, 0], [1, 1]]}]},
        {"thumbnail_max_side": 8},
        {"thumbnail_max_side": 96.5},
        {"thumbnail_quality": 0},
        {"thumbnail_quality": float("inf")},
        {"clip_labels": "person"},
        {"clip_keep": "yes"},
        {"thumbnail_format": "gif"},
        {"min_scores": {"person": 1.5}},
        {"min_scores": ["person"]},
        {"confirm_frames": 0},
        {"end_after_s": 0},
        {"detector": "yolo"},
    ],
)
def test_bad_config_is_refused_with_a_reason(bad):
    with pytest.raises(VisionError) as err:
        DetectionConfig.from_dict(bad)
    assert err.value.reason == "bad_config"


def test_sampler_passes_the_target_rate():
    sampler = FrameSampler(5.0)
    passed = [i for i in range(300) if sampler.accept(i / 30.0)]  # 10 s of 30 fps
    assert len(passed) == 50


def _thumb(config):
    (end,) = [e for e in _run({"sample_fps": 10, **config})[1] if e.end is not None]
    return end, cv2.imdecode(np.frombuffer(end.thumbnail, np.uint8), cv2.IMREAD_COLOR)


def test_thumbnail_size_and_quality_follow_the_config():
    sizes = {}
    for side, quality in ((96, 90), (32, 90), (32, 30)):
        end, img = _thumb({"thumbnail_max_side": side, "thumbnail_quality": quality})
        assert max(img.shape[:2]) <= side and img[..., 2].mean() > img[..., 0].mean()  # red subject
        sizes[side, quality] = (max(img.shape[:2]), len(end.thumbnail))
    # The 12x34 px subject's square crop (~50-60 px) is kept under 96 px and scaled down to 32.
    assert sizes[96, 90][0] > 40 and sizes[32, 90][0] == sizes[32, 30][0] == 32
    assert sizes[96, 90][1] > sizes[32, 90][1] > sizes[32, 30][1]


def test_thumbnail_huffman_tables_are_optimised():
    img = next(f.image for f in _walker_frames() if f.index == 20)
    box = (30, 100, 12, 34)
    ours = encode_thumbnail(img, box, max_side=96, quality=65)
    crop = cv2.imdecode(np.frombuffer(ours, np.uint8), cv2.IMREAD_COLOR)
    _, generic = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 65])
    assert len(ours) < len(generic) - 150  # libjpeg's generic tables alone are ~420 bytes


def test_thumbnail_format_follows_the_config_and_webp_is_smaller():
    webp, _ = _thumb({"thumbnail_quality": 65})
    jpeg, img = _thumb({"thumbnail_quality": 65, "thumbnail_format": "jpeg"})
    assert (webp.thumbnail_content_type, jpeg.thumbnail_content_type) == ("image/webp", "image/jpeg")
    assert img[..., 2].mean() > img[..., 0].mean() and len(webp.thumbnail) < len(jpeg.thumbnail)


def test_webp_falls_back_to_jpeg_where_opencv_cannot_write_it(monkeypatch):
    from edge.vision import media

    real = cv2.imencode

    def no_webp(ext, *args):
        if ext == ".webp":
            raise cv2.error("no WebP encoder in this build")
        return real(ext, *args)

    monkeypatch.setattr(media, "_webp_missing", False)
    monkeypatch.setattr(media.cv2, "imencode", no_webp)
    img = next(f.image for f in _walker_frames() if f.index == 20)
    assert (
        encode_thumbnail(img, (30, 100, 12, 34), max_side=96, quality=65, fmt="webp")[:3] == b"\xff\xd8\xff"
    )
    assert media._webp_missing  # asked once, then JPEG straight away


@pytest.mark.parametrize(
    ("settings", "has_clip", "uploaded"),
    [
        ({}, True, False),  # the default: every event's clip kept on the device, none uploaded
        ({"clip_labels": None}, True, True),
        ({"clip_labels": ["motion"]}, True, True),
        ({"clip_labels": ["vehicle"]}, True, False),
        ({"clip_labels": ["vehicle"], "clip_keep": False}, False, False),
        ({"clip_labels": ["motion"], "clip_keep": False}, True, True),
    ],
)
def test_clip_labels_and_clip_keep_choose_which_clips_are_recorded_and_uploaded(settings, has_clip, uploaded):
    end, _ = _thumb(settings)
    assert (end.clip is not None) is has_clip and end.clip_upload is uploaded and end.thumbnail
    kinds = [m["kind"] for m in end.metadata()["media"]]
    assert kinds == (["snapshot", "clip"] if uploaded else ["snapshot"])


def test_metadata_is_lean_and_valid_on_the_wire():
    _, events = _run({"sample_fps": 10, "clip_pre_s": 1.0, "clip_post_s": 1.0})
    start, end = events
    assert set(start.metadata()) == {"event_id", "camera", "label", "score", "bbox", "start"}
    meta = end.metadata()
    numbers = [meta["score"], meta["start"], meta["end"], *meta["bbox"]]
    assert all(v == round(v, 3) for v in numbers)
    payload = encode(make(Events, events=[start.metadata(), meta]))
    body = json.loads(payload)
    assert "null" not in payload.decode() and "media" not in body["events"][0]
    decoded = decode_up("events", payload).events
    assert decoded[0].end is None and decoded[1].end == meta["end"] and len(decoded[1].media) == 1
    inline = end.metadata(inline_thumbnail=True)
    assert "media" not in inline and base64.b64decode(inline["thumbnail"]) == end.thumbnail
    assert (
        decode_up("events", encode(make(Events, events=[inline]))).events[0].thumbnail == inline["thumbnail"]
    )


@pytest.mark.parametrize(
    "box",
    [
        (0.7005, 0.1, 0.2995, 0.5),
        (0.12345, 0.98765, 0.4321, 0.01235),
        (0.0, 0.0, 1.0, 1.0),
        (0.5, 0.5, 0.0, 0.0),
    ],
)
def test_rounded_box_stays_inside_the_frame(box):
    x, y, w, h = round_box(box)
    assert x + w <= 1 + 1e-9 and y + h <= 1 + 1e-9 and min(x, y, w, h) >= 0
    assert abs((x + w) - (box[0] + box[2])) <= 0.0005 + 1e-9 and abs(x - box[0]) <= 0.0005 + 1e-9


def test_metadata_of_numpy_values_encodes():
    """An ONNX detector's boxes and scores are numpy floats; the message encoder takes only Python's."""
    end = DetectionEvent(
        event_id="e1",
        camera="cam0",
        label="person",
        score=np.float32(0.87654),
        bbox=tuple(np.array([0.25, 0.5, 0.125, 0.25]) + 1e-5),
        start=np.float64(1.7e9),
        end=np.float64(1.7e9 + 2.5),
        zone=None,
        track_id=1,
    )
    meta = end.metadata()
    assert all(type(v) is float for v in (meta["score"], meta["start"], meta["end"], *meta["bbox"]))
    decoded = decode_up("events", encode(make(Events, events=[meta]))).events[0]
    assert decoded.bbox == (0.25, 0.5, 0.125, 0.25) and decoded.score == 0.877


def test_protocol_defaults_are_the_agents_defaults():
    """A down/config that leaves the detection settings out gives the agent's own defaults."""
    sent = DetectionConfig.from_dict(msgspec.to_builtins(DetectionSettings()))
    own = DetectionConfig()
    keys = (
        "thumbnail_max_side",
        "thumbnail_format",
        "thumbnail_quality",
        "clip_labels",
        "clip_keep",
        "clip_pre_s",
        "clip_post_s",
    )
    more = (
        "motion_threshold",
        "min_score",
        "min_scores",
        "sample_fps",
        "labels",
        "confirm_frames",
        "end_after_s",
    )
    for key in (*keys, *more, "detector"):
        assert getattr(sent, key) == getattr(own, key), key
