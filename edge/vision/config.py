"""Detection settings, in the shape the server sends in down/config `config["detection"]`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.vision.errors import VisionError
from edge.vision.models import DEFAULT_MIN_SCORES
from protocol.vocab import THUMBNAIL_FORMATS

# Bounds of the thumbnail settings (the same as protocol.down.DetectionSettings).
THUMB_SIDE = (16, 1024)
THUMB_QUALITY = (10, 100)


@dataclass(frozen=True)
class Zone:
    name: str
    polygon: tuple[tuple[float, float], ...]  # normalised [0, 1] frame coordinates, origin top-left

    def contains(self, x: float, y: float) -> bool:
        """Even-odd ray casting on normalised coordinates."""
        inside = False
        pts = self.polygon
        for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
        return inside


@dataclass(frozen=True)
class DetectionConfig:
    labels: frozenset[str] = frozenset()  # empty: every label the detector reports by default
    # The score a detection needs: per label (min_scores), else min_score. The defaults are the
    # default model's, measured on real footage (bench/edge): vehicles seen from above score low.
    min_score: float = 0.4
    min_scores: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIN_SCORES))
    zones: tuple[Zone, ...] = ()  # empty: the whole frame
    sample_fps: float = 5.0
    # Share of the frame that must be foreground to open the motion gate. 0.002 of a 640x360
    # frame is ~460 px: a person 40 px tall far away is ~600 px.
    motion_threshold: float = 0.002
    clip_pre_s: float = 3.0
    clip_post_s: float = 5.0
    # Labels whose clips are uploaded when the event ends; None: every label. Clips are ~100x
    # an event's other bytes, so by default none is: they stay on the device (clip_keep) until
    # an operator asks for one (the upload_clip command).
    clip_labels: frozenset[str] | None = frozenset()
    # Record every event's clip and keep it on the device; False: only clip_labels' events.
    clip_keep: bool = True
    # Thumbnail of the best frame: longest side in px, format and quality. 96 px WebP at 65
    # keeps a person's clothing and a vehicle's shape and colour readable in ~0.7 kB, small
    # enough to travel inline in the end report (bench/edge).
    thumbnail_max_side: int = 96
    thumbnail_format: str = "webp"
    thumbnail_quality: int = 65
    # One event per object: a track becomes an event after confirm_frames matched frames and
    # ends after end_after_s seconds unseen, so standing still, turning or a moment hidden
    # behind something does not split it.
    confirm_frames: int = 3
    end_after_s: float = 2.0
    # "onnx": the model (OTA-installed, else the agent's default NanoDet-g); "builtin": OpenCV
    # motion blobs, which cannot tell what moved and report the label "motion".
    detector: str = "onnx"
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this agent does not know yet

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DetectionConfig:
        """Validate `config["detection"]`; missing keys take defaults, unknown keys are kept aside."""
        data = dict(data or {})
        known = {
            "labels", "min_score", "zones", "sample_fps", "motion_threshold",
            "clip_pre_s", "clip_post_s", "clip_labels", "clip_keep", "thumbnail_max_side",
            "thumbnail_format", "thumbnail_quality", "detector", "min_scores", "confirm_frames",
            "end_after_s",
        }  # fmt: skip
        try:
            zones = tuple(_zone(z) for z in data.get("zones") or [])
            cfg = cls(
                labels=frozenset(str(x) for x in data.get("labels") or []),
                min_score=float(data.get("min_score", cls.min_score)),
                min_scores=_scores(data.get("min_scores", DEFAULT_MIN_SCORES)),
                confirm_frames=_int(data.get("confirm_frames", cls.confirm_frames)),
                end_after_s=float(data.get("end_after_s", cls.end_after_s)),
                zones=zones,
                sample_fps=float(data.get("sample_fps", cls.sample_fps)),
                motion_threshold=float(data.get("motion_threshold", cls.motion_threshold)),
                clip_pre_s=float(data.get("clip_pre_s", cls.clip_pre_s)),
                clip_post_s=float(data.get("clip_post_s", cls.clip_post_s)),
                clip_labels=_labels(data.get("clip_labels", [])),
                clip_keep=_bool(data.get("clip_keep", cls.clip_keep)),
                thumbnail_max_side=_int(data.get("thumbnail_max_side", cls.thumbnail_max_side)),
                thumbnail_format=str(data.get("thumbnail_format", cls.thumbnail_format)),
                thumbnail_quality=_int(data.get("thumbnail_quality", cls.thumbnail_quality)),
                detector=str(data.get("detector", cls.detector)),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise VisionError("bad_config", str(exc)) from exc
        if not 0 <= cfg.min_score <= 1 or not 0 <= cfg.motion_threshold <= 1:
            raise VisionError("bad_config", "min_score and motion_threshold must lie in [0, 1]")
        if not all(0 <= v <= 1 for v in cfg.min_scores.values()):
            raise VisionError("bad_config", "min_scores must lie in [0, 1]")
        if not 1 <= cfg.confirm_frames <= 100 or not 0 < cfg.end_after_s <= 600:
            raise VisionError("bad_config", "confirm_frames must lie in [1, 100], end_after_s in (0, 600]")
        if not 0 < cfg.sample_fps <= 60 or cfg.clip_pre_s < 0 or cfg.clip_post_s < 0:
            raise VisionError("bad_config", "sample_fps must lie in (0, 60], clip lengths >= 0")
        if not THUMB_SIDE[0] <= cfg.thumbnail_max_side <= THUMB_SIDE[1]:
            raise VisionError(
                "bad_config", f"thumbnail_max_side must lie in [{THUMB_SIDE[0]}, {THUMB_SIDE[1]}]"
            )
        if not THUMB_QUALITY[0] <= cfg.thumbnail_quality <= THUMB_QUALITY[1]:
            raise VisionError(
                "bad_config", f"thumbnail_quality must lie in [{THUMB_QUALITY[0]}, {THUMB_QUALITY[1]}]"
            )
        if cfg.thumbnail_format not in THUMBNAIL_FORMATS:
            raise VisionError("bad_config", f"thumbnail_format must be one of {', '.join(THUMBNAIL_FORMATS)}")
        if cfg.detector not in ("builtin", "onnx"):
            raise VisionError("bad_config", f"unknown detector {cfg.detector!r}")
        return cfg

    def score_floor(self, label: str) -> float:
        return self.min_scores.get(label, self.min_score)

    def label_allowed(self, label: str) -> bool:
        return not self.labels or label in self.labels

    def clip_upload(self, label: str) -> bool:
        """The event's clip is uploaded as soon as the event ends."""
        return self.clip_labels is None or label in self.clip_labels

    def clip_recorded(self, label: str) -> bool:
        """The event gets a clip: uploaded at once, or kept on the device for upload_clip."""
        return self.clip_keep or self.clip_upload(label)

    def zone_for(self, bbox: tuple[float, float, float, float]) -> str | None:
        """The first zone holding the box's bottom centre (where a person stands); '' if no zones."""
        if not self.zones:
            return ""
        x, y, w, h = bbox
        foot = (x + w / 2, y + h)
        return next((z.name for z in self.zones if z.contains(*foot)), None)


def _labels(raw: Any) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list | tuple | set | frozenset):
        raise ValueError("clip_labels must be a list of labels or null")
    return frozenset(str(x) for x in raw)


def _scores(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise ValueError("min_scores must map labels to scores")
    return {str(k): float(v) for k, v in raw.items()}


def _bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not true or false")
    return raw


def _int(raw: Any) -> int:
    """An integer setting; 96.0 is fine, 96.5 and True are not."""
    if isinstance(raw, bool) or float(raw) != int(raw):
        raise ValueError(f"{raw!r} is not an integer")
    return int(raw)


def _zone(raw: Mapping[str, Any]) -> Zone:
    pts = np.asarray(raw["polygon"], dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise ValueError(f"zone {raw.get('name')!r}: polygon needs at least 3 [x, y] points")
    if (pts < 0).any() or (pts > 1).any():
        raise ValueError(f"zone {raw.get('name')!r}: polygon points must be normalised to [0, 1]")
    return Zone(name=str(raw["name"]), polygon=tuple((float(x), float(y)) for x, y in pts))
