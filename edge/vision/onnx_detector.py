"""ONNX Runtime detector for NanoDet-style models: the default model and any OTA model of the same shape.

I/O convention (for model authors; models/build.py writes the default model this way):

Input: exactly one float32 tensor [1, 3, H, W], static H and W. The frame is letterboxed (aspect
kept, scaled to fit, padded right and bottom with the mean colour), in BGR order, normalised as
(x - mean) / std per channel (metadata "fleet.mean_bgr" / "fleet.std_bgr", JSON lists; NanoDet's
own values if absent), HWC -> CHW.

Outputs: one pair per stride s (any order, matched by shape, never by name):
  class scores [1, N, C], already sigmoided, N = (H/s) * (W/s), C = number of labels;
  box sides   [1, N, 4 * B]: for each of left, top, right, bottom a distribution over B bins;
              the side is the softmax's expected bin times s, from the cell centre
              ((i % (W/s)) + 0.5) * s, ((i // (W/s)) + 0.5) * s.
Labels: metadata "labels" (a JSON list of C names), or the 80 COCO names when C is 80.

Decoding keeps only the labels asked for (COCO car/bus/truck/motorcycle become "vehicle", one
label, before NMS), each above its own score floor, then NMS per label.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from edge.vision import models
from edge.vision.detectors import Detection
from edge.vision.errors import VisionError
from edge.vision.motion import MotionResult

NMS_IOU = 0.5


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """The frame scaled to fit `size` (w, h) with its aspect kept, padded right and bottom; and the scale."""
    w, h = size
    ih, iw = image.shape[:2]
    scale = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.empty((h, w, 3), np.uint8)
    out[:] = np.asarray(models.NANODET_MEAN, np.float32).round().astype(np.uint8)  # 0 after normalising
    out[:nh, :nw] = resized
    return out, scale


class OnnxDetector:
    name = "onnx"
    needs_motion = False

    def __init__(
        self,
        model_path: str | Path,
        *,
        labels: Iterable[str] | None = None,
        min_score: float = 0.4,
        min_scores: Mapping[str, float] | None = None,
        threads: int = 1,
    ) -> None:
        """`labels`: the Fleet labels to report (default person and vehicle); `min_scores` per label
        over `min_score`; `threads`: ONNX Runtime intra-op threads (1 is steadier on a busy camera)."""
        path = Path(model_path)
        if not path.is_file():
            raise VisionError("model_missing", f"no model at {path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for any bad file
            raise VisionError("model_invalid", f"{path.name}: {str(exc)[:300]}") from exc
        self.path = path
        self.threads = opts.intra_op_num_threads
        self.last_inference_ms = 0.0
        self._read_contract()
        self.set_labels(labels or models.DEFAULT_LABELS, min_score=min_score, min_scores=min_scores)

    # -- the contract ------------------------------------------------------------

    def _read_contract(self) -> None:
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
            raise VisionError("model_contract", "the model needs exactly one float32 NCHW input")
        shape = tuple(inputs[0].shape)
        if not all(isinstance(d, int) and d > 0 for d in shape) or shape[:2] != (1, 3):
            raise VisionError("model_contract", f"need a static [1,3,H,W] input, got {list(shape)}")
        self.input_name = inputs[0].name
        self.input_shape = tuple(int(d) for d in shape)
        _, _, h, w = self.input_shape
        meta = self._session.get_modelmeta().custom_metadata_map
        self.model_name = meta.get("name") or self.path.stem
        mean = json.loads(meta.get("fleet.mean_bgr") or json.dumps(models.NANODET_MEAN))
        std = json.loads(meta.get("fleet.std_bgr") or json.dumps(models.NANODET_STD))
        self._mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self._inv_std = (1.0 / np.asarray(std, np.float32)).reshape(1, 1, 3)
        outs = self._session.get_outputs()
        by_n: dict[int, dict[int, int]] = {}  # cells N -> {channels K: output index}
        for i, o in enumerate(outs):
            if len(o.shape) != 3 or not all(isinstance(d, int) for d in o.shape):
                raise VisionError(
                    "model_contract", f"output {o.name} is {o.shape}, not a static [1, N, K] map"
                )
            by_n.setdefault(o.shape[1], {})[o.shape[2]] = i
        ks = {k for pair in by_n.values() for k in pair}
        names = json.loads(meta["labels"]) if "labels" in meta else None
        if names is None and len(models.COCO_LABELS) in ks:
            names = list(models.COCO_LABELS)
        c = len(names) if isinstance(names, list) else -1
        if len(outs) < 2 or len(outs) % 2 or c not in ks:
            raise VisionError(
                "model_contract",
                f"outputs must be pairs of [1,N,C] scores and [1,N,4*B] boxes, C = labels ({c})",
            )
        self.levels: list[tuple[int, int, int, int]] = []  # (stride, cells across, scores idx, boxes idx)
        bins = set()
        for n, pair in sorted(by_n.items(), reverse=True):
            box_k = [k for k in pair if k != c]
            stride = math.sqrt(h * w / n)
            if len(pair) != 2 or len(box_k) != 1 or box_k[0] % 4 or stride != int(stride):
                raise VisionError("model_contract", f"no score/box pair for the {n}-cell level")
            s = int(stride)
            if h % s or w % s or (h // s) * (w // s) != n:
                raise VisionError("model_contract", f"{n} cells do not tile a {w}x{h} input")
            self.levels.append((s, w // s, pair[c], pair[box_k[0]]))
            bins.add(box_k[0] // 4)
        if len(bins) != 1:
            raise VisionError("model_contract", f"box maps with different bin counts {sorted(bins)}")
        (self.bins,) = bins
        self.class_names = tuple(str(x) for x in names)

    def set_labels(
        self, labels: Iterable[str], *, min_score: float = 0.4, min_scores: Mapping[str, float] | None = None
    ) -> None:
        """Which Fleet labels to report and the score each needs."""
        floors = {**models.DEFAULT_MIN_SCORES, **(min_scores or {})}
        wanted = list(dict.fromkeys(labels))
        groups = []
        for label in wanted:
            idx = [i for i, n in enumerate(self.class_names) if models.fleet_label(n) == label]
            if idx:
                groups.append((label, np.asarray(idx), float(floors.get(label, min_score))))
        self.labels = tuple(g[0] for g in groups)
        self._groups = groups

    # -- running -----------------------------------------------------------------

    def preprocess(self, boxed: np.ndarray) -> np.ndarray:
        """A letterboxed BGR uint8 frame -> the normalised [1, 3, H, W] tensor."""
        # blobFromImage subtracts the mean and goes HWC -> NCHW in one pass (4x numpy's time here).
        blob = cv2.dnn.blobFromImage(boxed, 1.0, None, self._mean.reshape(3).tolist(), swapRB=False)
        blob *= self._inv_std.reshape(1, 3, 1, 1)
        return blob

    def detect(self, image: np.ndarray, *, motion: MotionResult | None = None) -> list[Detection]:
        _, _, h, w = self.input_shape
        boxed, scale = letterbox(image, (w, h))
        tensor = self.preprocess(boxed)
        started = time.perf_counter()
        outputs = self._session.run(None, {self.input_name: tensor})
        self.last_inference_ms = (time.perf_counter() - started) * 1000.0
        frame_h, frame_w = image.shape[:2]
        out: list[Detection] = []
        for label, boxes, scores in self._decode(outputs):
            boxes /= scale
            np.clip(boxes[:, 0::2], 0, frame_w, out=boxes[:, 0::2])
            np.clip(boxes[:, 1::2], 0, frame_h, out=boxes[:, 1::2])
            xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
            keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, NMS_IOU)
            for i in np.asarray(keep, int).reshape(-1):
                x, y, bw, bh = (float(v) for v in xywh[i])
                if bw > 1 and bh > 1:
                    out.append(Detection(label, float(scores[i]), (x, y, bw, bh)))
        return out

    def _decode(self, outputs: list[np.ndarray]) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
        """Per label: candidate boxes (x1, y1, x2, y2 in input pixels) and scores above the floor."""
        found: dict[str, tuple[list, list]] = {g[0]: ([], []) for g in self._groups}
        for stride, across, si, bi in self.levels:
            cls = outputs[si][0]
            for label, idx, floor in self._groups:
                score = cls[:, idx].max(axis=1) if len(idx) > 1 else cls[:, idx[0]]
                cells = np.flatnonzero(score >= floor)
                if not cells.size:
                    continue
                dist = outputs[bi][0][cells].reshape(-1, 4, self.bins)
                dist = np.exp(dist - dist.max(axis=2, keepdims=True))
                sides = (dist / dist.sum(axis=2, keepdims=True)) @ np.arange(self.bins, dtype=np.float32)
                sides *= stride
                cx = (cells % across + 0.5) * stride
                cy = (cells // across + 0.5) * stride
                boxes = np.column_stack(
                    [cx - sides[:, 0], cy - sides[:, 1], cx + sides[:, 2], cy + sides[:, 3]]
                )
                found[label][0].append(boxes.astype(np.float32))
                found[label][1].append(score[cells])
        for label, (boxes, scores) in found.items():
            if boxes:
                yield label, np.concatenate(boxes), np.concatenate(scores)

    def self_test(self) -> float:
        """Run once on a grey frame and check the outputs (the OTA health check); returns ms."""
        _, _, h, w = self.input_shape
        tensor = self.preprocess(np.full((h, w, 3), 128, np.uint8))
        started = time.perf_counter()
        try:
            outputs = self._session.run(None, {self.input_name: tensor})
        except Exception as exc:
            raise VisionError("model_invalid", f"inference failed: {str(exc)[:300]}") from exc
        self.last_inference_ms = (time.perf_counter() - started) * 1000.0
        for stride, _, si, bi in self.levels:
            cls, box = outputs[si], outputs[bi]
            if not (np.isfinite(cls).all() and np.isfinite(box).all()):
                raise VisionError("model_contract", f"NaN or infinity in the stride-{stride} outputs")
            if cls.min() < 0 or cls.max() > 1:
                raise VisionError("model_contract", "class scores outside [0, 1]: not sigmoided")
        return self.last_inference_ms
