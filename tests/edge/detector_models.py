"""Detector models for tests: the real default model (built by `make model`) and tiny hand-made ones.

The tiny models follow the default model's I/O convention (edge.vision.onnx_detector) with fixed
outputs, so decoding can be checked exactly; others break one rule of it each, as a bad OTA
artifact would. Built with onnx.helper, nothing downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.vision.models import COCO_LABELS, default_model_path

SIZE = 64  # tiny input: strides 8 / 16 / 32 give 64 / 16 / 4 cells
BINS = 11


def default_model(variant: str = "fp32") -> Path:
    """The model the agent ships with; the suite runs after `make model` (make test depends on it)."""
    path = default_model_path(variant)
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make model` (make test does it first)")
    return path


def _sides(cells: int, sides: tuple[float, float, float, float] | None, at: int) -> np.ndarray:
    """[1, cells, 4*BINS] logits: every distribution peaked on bin 1, cell `at` on `sides` (in bins)."""
    logits = np.full((1, cells, 4, BINS), -20.0, np.float32)
    logits[..., 1] = 20.0
    if sides is not None:
        logits[0, at] = -20.0
        for k, v in enumerate(sides):
            logits[0, at, k, int(v)] = 20.0
    return logits.reshape(1, cells, 4 * BINS)


def tiny_model(
    *,
    hits: dict[str, tuple[int, float, tuple[int, int, int, int]]] | None = None,
    nan: bool = False,
    labels: list[str] | None = None,
    meta_labels: list[str] | None = None,
    input_shape: tuple = (1, 3, SIZE, SIZE),
) -> bytes:
    """A NanoDet-convention model with constant outputs.

    `hits`: COCO class name -> (stride-8 cell, score, (l, t, r, b) in bins); every other score is
    0.01. `nan`: the stride-32 scores are NaN (loads and runs, answers garbage). `labels`: the
    score channels (COCO's 80 by default); `meta_labels`: the "labels" metadata, if not `labels`.
    """
    hits = hits or {}
    names = labels or list(COCO_LABELS)
    nodes, outputs = [], []
    for stride in (8, 16, 32):
        cells = (SIZE // stride) ** 2
        scores = np.full((1, cells, len(names)), 0.01, np.float32)
        box = _sides(cells, None, 0)
        for name, (cell, score, sides) in hits.items():
            if stride == 8:
                scores[0, cell, names.index(name)] = score
                box = _sides(cells, sides, cell)
        if nan and stride == 32:
            scores[:] = np.nan
        for kind, value in (("cls", scores), ("box", box)):
            out = f"{kind}{stride}"
            nodes.append(helper.make_node("Constant", [], [out], value=numpy_helper.from_array(value)))
            outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(input_shape))], outputs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if (meta_labels or labels) is not None:
        helper.set_model_props(model, {"labels": json.dumps(meta_labels or labels)})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def heatmap_model() -> bytes:
    """A model of another convention: one [1, 2, 32, 32] heatmap (Fleet's old hand-built colour filter)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    y = helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, [1, 2, 32, 32])
    nodes = [
        helper.make_node("ReduceMax", ["image"], ["m"], axes=[1], keepdims=1),
        helper.make_node("MaxPool", ["m"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["p", "p"], ["heatmap"], axis=1),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "heatmap", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    return model.SerializeToString()


def slow_model(matmuls: int = 12, base: Path | None = None) -> bytes:
    """The real default model made slower, not different: `matmuls` chained [3*H, W] x [W, W]
    products on the input image, reduced and multiplied by 0, added to one output. Same detections,
    more time per frame (what a build without the right kernels or at the wrong resolution does).
    The chain depends on the input, so ONNX Runtime cannot fold it away at load."""
    model = onnx.load(str(base or default_model()))
    graph = model.graph
    x = graph.input[0]
    _, c, h, w = (d.dim_value for d in x.type.tensor_type.shape.dim)
    rng = np.random.default_rng(7)
    weights = (rng.standard_normal((w, w)) / np.sqrt(w)).astype(np.float32)  # keeps the norm: no overflow
    graph.initializer.extend(
        [
            numpy_helper.from_array(weights, "slow_w"),
            numpy_helper.from_array(np.array([c * h, w], np.int64), "slow_shape"),
            numpy_helper.from_array(np.array(0.0, np.float32), "slow_zero"),
        ]
    )
    nodes = [helper.make_node("Reshape", [x.name, "slow_shape"], ["slow_0"])]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"slow_{i}", "slow_w"], [f"slow_{i + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"slow_{matmuls}"], ["slow_mean"], keepdims=0),
        helper.make_node("Mul", ["slow_mean", "slow_zero"], ["slow_nothing"]),
    ]
    out = graph.output[0].name
    for node in graph.node:  # the producer of the first output now feeds the Add instead
        node.output[:] = [f"{out}_fast" if o == out else o for o in node.output]
    nodes.append(helper.make_node("Add", [f"{out}_fast", "slow_nothing"], [out]))
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def miswired_model(scale: float = 0.25, base: Path | None = None) -> bytes:
    """The real default model with the wrong input pre-processing baked in: the image is scaled by
    `scale` before the network (a build that normalises with the wrong mean/std). Loads, passes the
    health check, runs as fast, and misses much of what the real model finds."""
    model = onnx.load(str(base or default_model()))
    graph = model.graph
    x = graph.input[0].name
    graph.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), "miswired_scale"))
    for node in graph.node:
        node.input[:] = ["miswired_in" if i == x else i for i in node.input]
    graph.node.insert(0, helper.make_node("Mul", [x, "miswired_scale"], ["miswired_in"]))
    onnx.checker.check_model(model)
    return model.SerializeToString()
