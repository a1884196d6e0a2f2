"""Model quality on the device (edge.quality): percentiles, shadow agreement, windows, and the camera
running the real detector on real footage feeding them into valid up/telemetry bodies."""

import time

import msgspec
import pytest

from edge.agent.camera import Camera
from edge.quality import MAX_RUNS, QualityMeter, ShadowRun, agreement, percentile
from edge.telemetry import TelemetryBatcher
from edge.vision.detectors import Detection
from protocol.messages import encode, make
from protocol.up import ModelQuality, Telemetry
from tests.edge.detector_models import default_model


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_agreement_matches_by_label_and_iou_one_to_one():
    person = Detection("person", 0.9, (10, 10, 50, 100))
    car = Detection("car", 0.8, (200, 200, 80, 40))
    shifted = Detection("person", 0.7, (12, 12, 50, 100))  # IoU ~0.9 with person
    far = Detection("person", 0.6, (400, 10, 50, 100))
    as_dog = Detection("dog", 0.9, (200, 200, 80, 40))  # car's box, another label
    # The candidate finds the person, calls the car a dog and adds a person nobody saw.
    assert agreement([person, car], [shifted, as_dog, far]) == (1, 2, 2)
    # Two candidate boxes on one active box: one matches, the other is extra.
    assert agreement([person], [shifted, person]) == (1, 1, 1)
    assert agreement([], [person]) == (0, 0, 1)
    assert agreement([person], []) == (0, 1, 0)


def test_a_window_carries_the_runs_since_the_previous_one():
    clock = [1000.0]
    meter = QualityMeter(model="nanodet-g", version="2.0", wall=lambda: clock[0])
    for ms in (10.0, 20.0, 30.0, 40.0):
        meter.run(latency_ms=ms, detections=[Detection("person", 0.5, (0, 0, 1, 1))])
    meter.run(latency_ms=100.0, detections=[Detection("car", 1.0, (0, 0, 1, 1))])
    meter.dropped(2)
    clock[0] += 10.0
    w = meter.window()
    msgspec.convert(w, ModelQuality)  # the wire's shape and bounds
    assert (w["frames"], w["dropped_frames"], w["fps"]) == (5, 2, 0.5)
    assert (w["latency_p50_ms"], w["latency_p95_ms"]) == (30.0, 100.0)
    assert w["detections"] == {"person": 4, "car": 1}
    assert w["score_mean"] == pytest.approx(0.6)
    assert (w["start"], w["end"], w["role"]) == (1000.0, 1010.0, "active")
    assert "matched" not in w
    clock[0] += 5.0
    assert meter.window() is None  # nothing ran: nothing to say
    meter.crashed()
    assert meter.window()["crashes"] == 1  # a crash alone is worth a window


def test_shadow_windows_carry_agreement_and_many_runs_stay_bounded():
    meter = QualityMeter(model="nanodet-g", version="2.1", role="shadow")
    for _ in range(3 * MAX_RUNS):
        meter.run(latency_ms=5.0, detections=[])
    meter.compare(matched=8, reference=10, extra=3)
    assert len(meter._latency) < MAX_RUNS
    w = meter.window()
    assert (w["frames"], w["matched"], w["reference"], w["extra"]) == (3 * MAX_RUNS, 8, 10, 3)
    msgspec.convert(w, ModelQuality)


def test_the_wire_refuses_impossible_quality():
    base = {"model": "m", "version": "1", "start": 1.0, "end": 2.0, "frames": 1}
    for bad, why in (
        ({"end": 0.5}, "ends before"),
        ({"matched": 3, "reference": 2}, "matched cannot exceed"),
        ({"latency_p50_ms": 9.0, "latency_p95_ms": 3.0}, "below latency_p50_ms"),
        ({"role": "candidate"}, "role"),
        ({"detections": {"person": -1}}, "detections"),
    ):
        with pytest.raises(msgspec.ValidationError, match=why):
            msgspec.convert(base | bad, ModelQuality)


def test_the_camera_measures_the_real_detector_on_real_footage_into_telemetry():
    cam = Camera(
        source="tests/footage/store-aisle.mp4",
        camera="cam0",
        detection={},
        detector="onnx",
        model_path=None,
        default_model=default_model(),
        on_events=lambda events: None,
        realtime=False,
        loop_source=False,
    )
    batcher = TelemetryBatcher(system=lambda: {"cpu_pct": 1.0, "mem_pct": 1.0}, quality=cam.quality_windows)
    cam.start()
    try:
        deadline = time.monotonic() + 60
        while cam._thread is not None and cam._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        cam.stop()
    batcher.sample()
    body = batcher.flush()
    message = msgspec.json.decode(encode(make(Telemetry, **body)), type=Telemetry)
    (q,) = message.quality
    assert (q.model, q.version, q.role) == ("nanodet-g", "default", "active")
    assert q.frames == cam.pipeline.stats.frames_detected > 0
    assert 0 < q.latency_p50_ms <= q.latency_p95_ms
    assert q.detections.get("person", 0) > 0  # three shoppers walk the aisle
    assert 0 < q.score_mean <= 1


class _Fixed:
    """A detector stand-in for the shadow runner's bookkeeping (the real model is tested below)."""

    def __init__(self, found=(), fail=False):
        self.found, self.fail, self.calls = list(found), fail, 0

    def detect(self, image, *, motion=None):
        self.calls += 1
        if self.fail:
            raise RuntimeError("candidate broke")
        return self.found


def test_shadow_runs_on_its_share_of_frames_within_its_cpu_budget_and_counts_crashes():
    person = Detection("person", 0.9, (10, 10, 50, 100))
    meter = QualityMeter(model="m", version="2", role="shadow")
    cand = _Fixed([person])
    run = ShadowRun(cand, meter, share=0.25, cpu_budget_pct=100)
    ran = [run.offer(None, [person]) for _ in range(12)]
    assert ran.count(True) == 3 and cand.calls == 3  # 1 in 4
    w = meter.window()
    assert (w["frames"], w["matched"], w["reference"], w["extra"]) == (3, 3, 3, 0)
    # A detector that takes all the time it is given: the budget (10% of one core) holds it back.
    t = [0.0]

    class Slow(_Fixed):
        def detect(self, image, *, motion=None):
            t[0] += 1.0  # one second per frame
            return super().detect(image)

    slow = ShadowRun(Slow(), meter, share=1.0, cpu_budget_pct=10, clock=lambda: t[0])
    for _ in range(30):
        slow.offer(None, [])
        t[0] += 0.2  # frames 0.2 s apart
    assert slow.detector.calls <= 10 and slow.over_budget >= 20
    broken = ShadowRun(_Fixed(fail=True), meter, share=1.0, cpu_budget_pct=100)
    assert not broken.offer(None, [person])
    assert meter.window()["crashes"] == 1
    with pytest.raises(ValueError, match="share"):
        ShadowRun(cand, meter, share=0, cpu_budget_pct=10)


def test_shadow_agreement_on_real_footage_tells_a_miswired_build_from_the_real_model(tmp_path):
    from edge.quality import ShadowRun
    from edge.vision.onnx_detector import OnnxDetector
    from edge.vision.sources import open_source
    from tests.edge.detector_models import miswired_model

    active = OnnxDetector(default_model())
    miswired = tmp_path / "miswired.onnx"
    miswired.write_bytes(miswired_model(0.1))
    same = ShadowRun(OnnxDetector(default_model()), QualityMeter(model="m", version="same", role="shadow"),
                     share=1.0, cpu_budget_pct=100)  # fmt: skip
    bad = ShadowRun(OnnxDetector(miswired), QualityMeter(model="m", version="bad", role="shadow"),
                    share=1.0, cpu_budget_pct=100)  # fmt: skip
    for i, frame in enumerate(open_source("tests/footage/store-aisle.mp4")):
        if i % 4 == 0:
            found = active.detect(frame.image)
            same.offer(frame.image, found)
            bad.offer(frame.image, found)
    s, b = same.meter.window(), bad.meter.window()
    assert s["reference"] == b["reference"] >= 20  # the shoppers, as the active model sees them
    assert s["matched"] == s["reference"] and s["extra"] == 0  # the same model agrees with itself
    assert b["matched"] / b["reference"] < 0.5  # the miswired build misses most of them
