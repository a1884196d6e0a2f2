"""The default model (NanoDet-g, COCO) and how its classes become Fleet labels.

The model files are built by `make model` (models/build.py) into var/models/, never downloaded
at run time; a camera gets them with the agent or as OTA artifacts.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.vision.errors import VisionError

DEFAULT_MODEL = "nanodet-g"
VARIANTS = {"fp32": f"{DEFAULT_MODEL}.onnx", "int8": f"{DEFAULT_MODEL}-int8.onnx"}
MODELS_DIR_ENV = "FLEET_MODELS_DIR"
_REPO_MODELS = Path(__file__).resolve().parents[2] / "var" / "models"

# NanoDet's training normalisation, BGR order (FACTS.md: RGB/255 loses nearly every detection).
NANODET_MEAN = [103.53, 116.28, 123.675]
NANODET_STD = [57.375, 57.12, 58.395]

COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# One car often scores car + bus + truck at once: merged before NMS, they are one vehicle.
MERGE = {"car": "vehicle", "bus": "vehicle", "truck": "vehicle", "motorcycle": "vehicle"}
# What the detector reports unless the config names labels: "tv" and "chair" fire on furniture
# in every frame of real footage (FACTS.md), so everything else stays out by default.
DEFAULT_LABELS = ("person", "vehicle")
# Per-label score floors measured on real footage (bench/edge): cars seen from above score low
# (often "cell phone" instead), so vehicles need a lower floor than people.
DEFAULT_MIN_SCORES = {"person": 0.4, "vehicle": 0.25}


def fleet_label(coco: str) -> str:
    return MERGE.get(coco, coco)


def default_model_path(variant: str = "fp32") -> Path:
    """Where `make model` put the default model: $FLEET_MODELS_DIR, else var/models of this checkout."""
    if variant not in VARIANTS:
        raise VisionError("bad_config", f"unknown model variant {variant!r}")
    base = Path(os.environ.get(MODELS_DIR_ENV) or _REPO_MODELS)
    return base / VARIANTS[variant]
