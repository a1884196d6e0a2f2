"""Thumbnail and clip encoding with bounded size and duration."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import cv2
import numpy as np

from edge.vision.errors import VisionError

CLIP_CONTENT_TYPE = "video/mp4"
THUMBNAIL_CONTENT_TYPE = "image/jpeg"


def encode_thumbnail(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    *,
    max_side: int = 160,
    max_bytes: int = 12_000,
    quality: int = 80,
) -> bytes:
    """JPEG of the box with a margin, at most max_side px per side and max_bytes long.

    Huffman tables are optimised for the image: the same pixels, ~350 bytes fewer on a
    small thumbnail, where libjpeg's generic tables are a third of the file.
    """
    fh, fw = image.shape[:2]
    x, y, w, h = box
    margin = 0.25 * max(w, h)
    side = max(w, h) + 2 * margin  # square crop: stable shape for UI grids
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(fw, cx + side / 2)), int(min(fh, cy + side / 2))
    crop = image[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else image
    scale = min(1.0, max_side / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    while True:
        ok, buf = cv2.imencode(
            ".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1]
        )
        if not ok:
            raise VisionError("encode_failed", "JPEG encoder refused the thumbnail")
        if len(buf) <= max_bytes or quality <= 20:
            return buf.tobytes()
        quality -= 15


def encode_clip(frames: Sequence[np.ndarray], *, fps: float, fourcc: str = "mp4v") -> bytes:
    """MPEG-4 (part 2) of the frames, all resized to the first frame's size.

    VideoWriter only writes to a path, so the clip goes through a private temporary file.
    """
    if not frames:
        raise VisionError("encode_failed", "a clip needs at least one frame")
    h, w = frames[0].shape[:2]
    w, h = w - w % 2, h - h % 2  # MPEG-4 wants even dimensions
    fd, path = tempfile.mkstemp(suffix=".mp4", prefix="fleet-clip-")
    os.close(fd)
    try:
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), max(1.0, fps), (w, h))
        if not writer.isOpened():
            raise VisionError("encode_failed", f"VideoWriter refused {fourcc}")
        try:
            for f in frames:
                writer.write(f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h)))
        finally:
            writer.release()
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)
