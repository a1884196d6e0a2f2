"""ONNX Runtime detector for models delivered by OTA.

I/O contract (docs for model authors):

Input: exactly one tensor, float32 NCHW [1, 3, H, W], RGB, values 0..1. The frame is resized to
W x H without letterboxing. H and W come from `input_shape` or else from the model's static dims.

Output, one of two forms:
  heatmap: one tensor [1, C, h, w], C == len(labels), values 0..1, each channel covering the
           extent of that class's objects. Decoded per class: cells >= `threshold` form
           8-connected components; each component's bounding box (scaled to the frame) is one
           detection with the component's peak as score; overlapping boxes of different classes
           keep the higher score.
  boxes:   three tensors named boxes [N, 4] (x1, y1, x2, y2 normalised 0..1), scores [N] (0..1)
           and labels [N] (int, index into `labels`); a leading batch dim of 1 is allowed.

Labels come from the `labels` argument or else from the model metadata key "labels" (JSON list).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from edge.vision.detectors import Detection, nms
from edge.vision.errors import VisionError
from edge.vision.motion import MotionResult


class OnnxDetector:
    name = "onnx"
    needs_motion = False

    def __init__(
        self,
        model_path: str | Path,
        labels: list[str] | tuple[str, ...] | None = None,
        input_shape: tuple[int, int, int, int] | None = None,
        *,
        threshold: float = 0.3,
        threads: int = 1,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise VisionError("model_missing", f"no model at {path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # the camera's other work needs the other cores
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for any bad file
            raise VisionError("model_invalid", f"{path.name}: {exc}") from exc
        self.threshold = threshold
        self.last_inference_ms = 0.0
        self._read_contract(labels, input_shape)

    def _read_contract(self, labels, input_shape) -> None:
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise VisionError("model_contract", "the model needs exactly one NCHW input")
        self._input_name = inputs[0].name
        shape = input_shape or tuple(inputs[0].shape)
        if not all(isinstance(d, int) and d > 0 for d in shape) or shape[1] != 3:
            raise VisionError("model_contract", f"need a static [1,3,H,W] input shape, got {shape}")
        self.input_shape = tuple(int(d) for d in shape)
        if labels is None:
            meta = self._session.get_modelmeta().custom_metadata_map
            if "labels" not in meta:
                raise VisionError("model_contract", "labels not given and not in the model metadata")
            labels = json.loads(meta["labels"])
        self.labels = tuple(str(x) for x in labels)
        outputs = {o.name: o for o in self._session.get_outputs()}
        if {"boxes", "scores", "labels"} <= outputs.keys():
            self.mode = "boxes"
        elif len(outputs) == 1:
            self.mode = "heatmap"
            (out,) = outputs.values()
            channels = out.shape[1] if len(out.shape) == 4 else None
            if isinstance(channels, int) and channels != len(self.labels):
                raise VisionError(
                    "model_contract", f"{channels} heatmap channels for {len(self.labels)} labels"
                )
        else:
            raise VisionError("model_contract", "outputs must be one heatmap or boxes/scores/labels")

    def detect(self, image: np.ndarray, *, motion: MotionResult | None = None) -> list[Detection]:
        _, _, h, w = self.input_shape
        rgb = cv2.cvtColor(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        tensor = (rgb.astype(np.float32) * (1.0 / 255.0)).transpose(2, 0, 1)[None]
        started = time.perf_counter()
        outputs = self._session.run(None, {self._input_name: tensor})
        self.last_inference_ms = (time.perf_counter() - started) * 1000.0
        frame_h, frame_w = image.shape[:2]
        if self.mode == "boxes":
            names = [o.name for o in self._session.get_outputs()]
            got = dict(zip(names, outputs, strict=True))
            return self._decode_boxes(got["boxes"], got["scores"], got["labels"], frame_w, frame_h)
        return self._decode_heatmap(outputs[0][0], frame_w, frame_h)

    def _decode_heatmap(self, heatmap: np.ndarray, frame_w: int, frame_h: int) -> list[Detection]:
        if heatmap.shape[0] != len(self.labels):
            raise VisionError("model_contract", f"{heatmap.shape[0]} channels for {len(self.labels)} labels")
        sy, sx = frame_h / heatmap.shape[1], frame_w / heatmap.shape[2]
        dets = []
        for c, label in enumerate(self.labels):
            plane = heatmap[c]
            mask = (plane >= self.threshold).astype(np.uint8)
            n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for i in range(1, n):
                x, y, w, h, _area = stats[i]
                score = float(plane[comp == i].max())
                dets.append(Detection(label, min(1.0, score), (x * sx, y * sy, w * sx, h * sy)))
        return nms(dets, 0.5)

    def _decode_boxes(self, boxes, scores, labels, frame_w: int, frame_h: int) -> list[Detection]:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        labels = np.asarray(labels).reshape(-1).astype(int)
        dets = []
        for (x1, y1, x2, y2), s, k in zip(boxes, scores, labels, strict=True):
            if s < self.threshold or not 0 <= k < len(self.labels):
                continue
            x1, x2 = np.clip([x1, x2], 0, 1) * frame_w
            y1, y2 = np.clip([y1, y2], 0, 1) * frame_h
            if x2 > x1 and y2 > y1:
                dets.append(Detection(self.labels[k], float(s), (x1, y1, x2 - x1, y2 - y1)))
        return dets

    def self_test(self) -> float:
        """Run once on a grey frame (the OTA health check); returns the inference time in ms."""
        _, _, h, w = self.input_shape
        self.detect(np.full((h, w, 3), 128, np.uint8))
        return self.last_inference_ms
