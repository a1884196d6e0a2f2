"""Edge vision: camera sources, motion gate, detectors, tracker and event builder (no Django)."""

from edge.vision.config import DetectionConfig, Zone
from edge.vision.detectors import Detection, Detector, HogPeopleDetector, MotionBlobDetector
from edge.vision.errors import VisionError
from edge.vision.events import DetectionEvent
from edge.vision.frame import Frame
from edge.vision.onnx_detector import OnnxDetector
from edge.vision.pipeline import Pipeline, PipelineStats
from edge.vision.sources import FrameSource, open_source
from edge.vision.synthetic import SceneParams, SyntheticScene

__all__ = [
    "Detection",
    "DetectionConfig",
    "DetectionEvent",
    "Detector",
    "Frame",
    "FrameSource",
    "HogPeopleDetector",
    "MotionBlobDetector",
    "OnnxDetector",
    "Pipeline",
    "PipelineStats",
    "SceneParams",
    "SyntheticScene",
    "VisionError",
    "Zone",
    "open_source",
]
