"""The frame every camera source yields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    ts: float  # seconds: wall-clock time for live sources, media time for files and synthetic scenes
    index: int  # 0-based position in the source
    image: np.ndarray  # HxWx3 uint8, BGR
