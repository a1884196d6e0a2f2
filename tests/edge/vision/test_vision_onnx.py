"""The ONNX detector: exact decoding on tiny convention models, refusal of models that break the
convention, and the real default model on frames of real footage (tests/footage, CC BY 4.0)."""

import cv2
import numpy as np
import pytest

from edge.vision.errors import VisionError
from edge.vision.onnx_detector import OnnxDetector, letterbox
from tests.edge.detector_models import default_model, heatmap_model, tiny_model

FOOTAGE = "tests/footage"


def _write(tmp_path, data: bytes, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_boxes_are_decoded_from_bin_distributions_and_undo_the_letterbox(tmp_path):
    # Stride-8 cell 27 is column 3, row 3: centre (28, 28) in the 64x64 input. Sides of 2, 3, 2, 3
    # bins of 8 px give (12, 4)-(44, 52); the 128x128 frame was scaled by 0.5 into the input.
    det = OnnxDetector(_write(tmp_path, tiny_model(hits={"person": (27, 0.9, (2, 3, 2, 3))})))
    assert det.input_shape == (1, 3, 64, 64) and [lv[0] for lv in det.levels] == [8, 16, 32]
    (d,) = det.detect(np.zeros((128, 128, 3), np.uint8))
    assert d.label == "person" and d.score == pytest.approx(0.9)
    assert d.box == pytest.approx((24.0, 8.0, 64.0, 96.0), abs=0.01)


def test_car_bus_and_truck_on_one_object_are_one_vehicle_and_other_classes_stay_out(tmp_path):
    hits = {
        "car": (27, 0.5, (2, 3, 2, 3)),
        "truck": (27, 0.35, (2, 3, 2, 3)),
        "tv": (9, 0.95, (1, 1, 1, 1)),  # furniture: not asked for
    }
    path = _write(tmp_path, tiny_model(hits=hits))
    dets = OnnxDetector(path).detect(np.zeros((64, 64, 3), np.uint8))
    assert [(d.label, round(d.score, 2)) for d in dets] == [("vehicle", 0.5)]
    tv = OnnxDetector(path, labels=["tv"]).detect(np.zeros((64, 64, 3), np.uint8))
    assert [d.label for d in tv] == ["tv"]


def test_each_label_has_its_own_score_floor(tmp_path):
    path = _write(
        tmp_path, tiny_model(hits={"car": (27, 0.3, (2, 3, 2, 3)), "person": (9, 0.3, (1, 1, 1, 1))})
    )
    frame = np.zeros((64, 64, 3), np.uint8)
    # The defaults: vehicles from 0.25 (cars seen from above score low), people from 0.4.
    assert [d.label for d in OnnxDetector(path).detect(frame)] == ["vehicle"]
    floors = OnnxDetector(path, min_scores={"person": 0.2, "vehicle": 0.5})
    assert [d.label for d in floors.detect(frame)] == ["person"]


def test_threads_are_configurable(tmp_path):
    assert OnnxDetector(_write(tmp_path, tiny_model()), threads=2).threads == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not a model", "model_invalid"),
        (tiny_model(input_shape=(1, 1, 64, 64)), "model_contract"),  # wrong input shape
        (tiny_model(input_shape=(1, 3, "h", "w")), "model_contract"),  # no static size
        (heatmap_model(), "model_contract"),  # wrong outputs
        (tiny_model(meta_labels=["person", "car"]), "model_contract"),  # 2 labels for 80 score channels
    ],
)
def test_a_model_that_breaks_the_convention_is_refused_with_a_reason(tmp_path, data, reason):
    with pytest.raises(VisionError) as err:
        OnnxDetector(_write(tmp_path, data))
    assert err.value.reason == reason


def test_missing_model_and_nan_answers_are_refused(tmp_path):
    with pytest.raises(VisionError) as err:
        OnnxDetector(tmp_path / "none.onnx")
    assert err.value.reason == "model_missing"
    det = OnnxDetector(_write(tmp_path, tiny_model(nan=True)))  # loads and runs
    with pytest.raises(VisionError) as err:
        det.self_test()
    assert err.value.reason == "model_contract"


def test_letterbox_keeps_the_aspect_and_pads_right_and_bottom():
    frame = np.full((270, 480, 3), 255, np.uint8)
    boxed, scale = letterbox(frame, (416, 416))
    assert boxed.shape == (416, 416, 3) and scale == pytest.approx(416 / 480)
    assert boxed[:234].min() == 255 and boxed[235:].max() < 255  # 270 * 416 / 480 = 234 rows of frame


def _frame(name: str, at_s: float) -> np.ndarray:
    cap = cv2.VideoCapture(f"{FOOTAGE}/{name}")
    cap.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000)
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_default_model_sees_the_shoppers_and_the_cars_and_not_the_bare_table(variant):
    det = OnnxDetector(default_model(variant))
    assert det.input_shape == (1, 3, 416, 416) and det.labels == ("person", "vehicle")
    assert det.self_test() > 0
    shoppers = det.detect(_frame("store-aisle.mp4", 3.0))
    assert sum(d.label == "person" for d in shoppers) >= 2
    cars = det.detect(_frame("car-two-cars.mp4", 3.4))  # the silver and the red car, both in view
    assert [d.label for d in cars] == ["vehicle", "vehicle"]
    (a, b) = sorted(cars, key=lambda d: d.box[0])
    assert a.box[0] + a.box[2] < b.box[0] + 0.5 * b.box[2]  # two cars side by side, not one box
    assert det.detect(_frame("bottle-hand.mp4", 0.5)) == []  # bottles on a table, nothing else
