"""Build Fleet's own small ONNX detector with onnx.helper: fixed weights, no training, no download.

    python -m edge.vision.model_builder out.onnx [--height 180 --width 320]

What it computes (input float32 NCHW [1, 3, H, W], RGB, 0..1; output "heatmap" [1, 2, H/2, W/2],
channel 0 person, channel 1 vehicle, values 0..1 covering each object's extent):

1. colourfulness = max(R,G,B) - min(R,G,B), squashed by a sigmoid around 0.3: a soft mask of
   saturated pixels (clothing, car paint) against a low-saturation street background;
2. 2x2 average pooling to a coarse grid;
3. person evidence: a tall 3x9-cell box filled, with BOTH 3-cell side bands empty (two convolutions
   and a Min, so the edge of a wide object does not look like a person);
4. vehicle evidence: a wide 15x5-cell band filled (a person covers at most a third of it);
5. each evidence map is spread over the object's extent by max-pooling and multiplied by the mask.

The kernel sizes assume objects about 10-16 % of the frame height (the synthetic scene's
geometry, a typical street camera). It is a real model run by ONNX Runtime, but a hand-built
colour-and-shape filter, not a learned detector: it will fire on any saturated blob of the
right shape and miss grey-clad people.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LABELS = ("person", "vehicle")
OPSET = 17
CHROMA_THRESHOLD = 0.3
CHROMA_GAIN = 25.0


def _box_kernel(kh: int, kw: int, x0: int, x1: int, size_w: int) -> np.ndarray:
    """[1,1,kh,size_w] averaging over columns x0..x1-1."""
    k = np.zeros((1, 1, kh, size_w), np.float32)
    k[..., x0:x1] = 1.0 / (kh * (x1 - x0))
    return k


def build_detector_model(*, height: int = 180, width: int = 320) -> onnx.ModelProto:
    """The person/vehicle heatmap model for input [1,3,height,width] (both even)."""
    if height % 2 or width % 2 or height < 32 or width < 32:
        raise ValueError("height and width must be even and at least 32")
    inits = [
        numpy_helper.from_array(np.array(CHROMA_THRESHOLD, np.float32), "chroma_t"),
        numpy_helper.from_array(np.array(CHROMA_GAIN, np.float32), "chroma_k"),
        # person: centre 3 cols x 9 rows, side bands 3 cols each, in a 9x9 window
        numpy_helper.from_array(_box_kernel(9, 3, 3, 6, 9), "w_centre"),
        numpy_helper.from_array(_box_kernel(9, 3, 0, 3, 9), "w_left"),
        numpy_helper.from_array(_box_kernel(9, 3, 6, 9, 9), "w_right"),
        numpy_helper.from_array(np.array(0.25, np.float32), "p_bias"),
        numpy_helper.from_array(np.array(2.0, np.float32), "p_gain"),
        numpy_helper.from_array(_box_kernel(5, 15, 0, 15, 15), "w_vehicle"),
        numpy_helper.from_array(np.array(0.55, np.float32), "v_bias"),
        numpy_helper.from_array(np.array(1 / 0.35, np.float32), "v_gain"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    n = helper.make_node
    nodes = [
        n("ReduceMax", ["image"], ["cmax"], axes=[1], keepdims=1),
        n("ReduceMin", ["image"], ["cmin"], axes=[1], keepdims=1),
        n("Sub", ["cmax", "cmin"], ["chroma"]),
        n("Sub", ["chroma", "chroma_t"], ["chroma_c"]),
        n("Mul", ["chroma_c", "chroma_k"], ["chroma_s"]),
        n("Sigmoid", ["chroma_s"], ["fg"]),
        n("AveragePool", ["fg"], ["fgp"], kernel_shape=[2, 2], strides=[2, 2]),
        # person evidence = min(centre - left, centre - right)
        n("Conv", ["fgp", "w_centre"], ["pc"], pads=[4, 4, 4, 4]),
        n("Conv", ["fgp", "w_left"], ["pl"], pads=[4, 4, 4, 4]),
        n("Conv", ["fgp", "w_right"], ["pr"], pads=[4, 4, 4, 4]),
        n("Sub", ["pc", "pl"], ["pdl"]),
        n("Sub", ["pc", "pr"], ["pdr"]),
        n("Min", ["pdl", "pdr"], ["pmin"]),
        n("Sub", ["pmin", "p_bias"], ["pb"]),
        n("Mul", ["pb", "p_gain"], ["pg"]),
        n("Clip", ["pg", "zero", "one"], ["pev"]),
        n("MaxPool", ["pev"], ["pspread"], kernel_shape=[19, 9], pads=[9, 4, 9, 4]),
        n("Mul", ["pspread", "fgp"], ["hm_person"]),
        # vehicle evidence = a wide band filled
        n("Conv", ["fgp", "w_vehicle"], ["vc"], pads=[2, 7, 2, 7]),
        n("Sub", ["vc", "v_bias"], ["vb"]),
        n("Mul", ["vb", "v_gain"], ["vg"]),
        n("Clip", ["vg", "zero", "one"], ["vev"]),
        n("MaxPool", ["vev"], ["vspread"], kernel_shape=[15, 29], pads=[7, 14, 7, 14]),
        n("Mul", ["vspread", "fgp"], ["hm_vehicle"]),
        n("Concat", ["hm_person", "hm_vehicle"], ["heatmap"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fleet_colour_shape_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [
            helper.make_tensor_value_info(
                "heatmap", TensorProto.FLOAT, [1, len(LABELS), height // 2, width // 2]
            )
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fleet.edge.vision"
    )
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    helper.set_model_props(
        model,
        {"labels": json.dumps(list(LABELS)), "input": "rgb01_nchw", "output": "heatmap"},
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_detector_model(path: str | Path, *, height: int = 180, width: int = 320) -> Path:
    path = Path(path)
    onnx.save_model(build_detector_model(height=height, width=width), str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="where to write the .onnx file")
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--width", type=int, default=320)
    args = parser.parse_args(argv)
    path = write_detector_model(args.out, height=args.height, width=args.width)
    print(f"wrote {path} ({path.stat().st_size} bytes), labels {list(LABELS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
