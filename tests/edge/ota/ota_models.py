"""Tiny ONNX models built in the test (no download): healthy, NaN-producing, and not a model at all."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

HARDWARE = "cam-x1"
AGENT = "1.4.0"
SHAPE = [1, 3, 128, 128]  # 196 KiB of weights: several download chunks


def model_bytes(variant: int = 1, *, op: str = "Add") -> bytes:
    """Y = X <op> C, C a constant the size of the input. `variant` makes distinct artifacts.

    op="Add": a healthy model. op="Log" of (X - C) with C > 1: NaN output, runs fine otherwise.
    """
    rng = np.random.default_rng(variant)
    const = rng.random(SHAPE, dtype=np.float32) + (2.0 if op == "Log" else 0.0)
    init = helper.make_tensor("C", TensorProto.FLOAT, SHAPE, const.ravel().tolist())
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, SHAPE)
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, SHAPE)
    if op == "Add":
        nodes = [helper.make_node("Add", ["X", "C"], ["Y"])]
    else:
        nodes = [helper.make_node("Sub", ["X", "C"], ["D"]), helper.make_node("Log", ["D"], ["Y"])]
    graph = helper.make_graph(nodes, "selftest", [x], [y], [init])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def broken_model_bytes() -> bytes:
    return np.random.default_rng(7).bytes(50_000)
