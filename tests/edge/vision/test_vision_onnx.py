import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.vision.detectors import iou
from edge.vision.errors import VisionError
from edge.vision.model_builder import LABELS, main, write_detector_model
from edge.vision.onnx_detector import OnnxDetector
from edge.vision.synthetic import SceneParams, SyntheticScene


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return write_detector_model(tmp_path_factory.mktemp("model") / "detector.onnx")


def test_built_model_passes_the_checker_and_the_cli_writes_it(model_path, tmp_path, capsys):
    onnx.checker.check_model(onnx.load(str(model_path)), full_check=True)
    assert main([str(tmp_path / "cli.onnx")]) == 0
    assert (tmp_path / "cli.onnx").read_bytes() == model_path.read_bytes()


def test_onnx_detector_finds_the_synthetic_objects_with_their_labels(model_path):
    scene = SyntheticScene(SceneParams.parse("seed=4,width=640,height=360,people=4,vehicles=2,duration=40"))
    det = OnnxDetector(model_path)  # labels and input shape from the model itself
    assert det.labels == LABELS and det.input_shape == (1, 3, 180, 320)
    found = total = 0
    for i in range(0, scene.n_frames, 10):
        dets = det.detect(scene.render(i))
        for gt in scene.boxes(i):
            total += 1
            found += any(d.label == gt.label and iou(d.box, gt.box) > 0.3 for d in dets)
    assert total >= 20
    assert found / total >= 0.8
    assert det.last_inference_ms > 0 and det.self_test() < 1000


def test_boxes_output_contract_is_decoded(tmp_path):
    boxes = numpy_helper.from_array(np.array([[0.1, 0.2, 0.3, 0.6], [0.5, 0.5, 0.9, 0.8]], np.float32), "b")
    scores = numpy_helper.from_array(np.array([0.9, 0.1], np.float32), "s")
    labels = numpy_helper.from_array(np.array([1, 0], np.int64), "l")
    nodes = [
        helper.make_node("Constant", [], ["boxes"], value=boxes),
        helper.make_node("Constant", [], ["scores"], value=scores),
        helper.make_node("Constant", [], ["labels"], value=labels),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "boxes.onnx"
    onnx.save_model(model, str(path))
    det = OnnxDetector(path, ["person", "vehicle"], threshold=0.5)
    (d,) = det.detect(np.zeros((100, 200, 3), np.uint8))
    assert d.label == "vehicle" and d.score == pytest.approx(0.9)
    assert d.box == pytest.approx((20.0, 20.0, 40.0, 40.0))


def test_missing_and_broken_models_are_refused(tmp_path):
    with pytest.raises(VisionError) as err:
        OnnxDetector(tmp_path / "none.onnx", ["person"])
    assert err.value.reason == "model_missing"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(VisionError) as err:
        OnnxDetector(bad, ["person"])
    assert err.value.reason == "model_invalid"


def test_label_count_must_match_heatmap_channels(model_path):
    with pytest.raises(VisionError) as err:
        OnnxDetector(model_path, ["person"])
    assert err.value.reason == "model_contract"
