"""Thumbnail and clip encoding with bounded size and duration."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence

import cv2
import numpy as np

from edge.vision.errors import VisionError

CLIP_CONTENT_TYPE = "video/mp4"
THUMBNAIL_CONTENT_TYPE = "image/jpeg"  # the snapshot command's full frame
IMAGE_CONTENT_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp"}

log = logging.getLogger(__name__)
_webp_missing = False  # an OpenCV built without libwebp: say so once, then use JPEG


def _encode(crop: np.ndarray, fmt: str, quality: int) -> bytes | None:
    if fmt == "webp":
        # 1..100 is lossy; above 100 would be lossless, which a thumbnail never needs.
        ok, buf = cv2.imencode(".webp", crop, [cv2.IMWRITE_WEBP_QUALITY, min(quality, 100)])
    else:
        # Huffman tables optimised for the image: the same pixels, ~350 bytes fewer on a small
        # thumbnail, where libjpeg's generic tables are a third of the file.
        ok, buf = cv2.imencode(
            ".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1]
        )
    return buf.tobytes() if ok else None


def thumbnail_crop(image: np.ndarray, box: tuple[float, float, float, float], *, max_side: int) -> np.ndarray:
    """The pixels a thumbnail shows: a square crop of the box with a margin, at most max_side px."""
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
    return crop


def encode_thumbnail(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    *,
    max_side: int = 160,
    max_bytes: int = 12_000,
    quality: int = 80,
    fmt: str = "jpeg",
) -> bytes:
    """JPEG or WebP (`fmt`) of the box with a margin, at most max_side px per side and max_bytes
    long. The format is in the bytes (protocol.images.image_content_type): WebP falls back
    to JPEG where OpenCV was built without it."""
    global _webp_missing
    if fmt not in IMAGE_CONTENT_TYPES:
        raise VisionError("bad_config", f"unknown thumbnail format {fmt!r}")
    crop = thumbnail_crop(image, box, max_side=max_side)
    if fmt == "webp" and _webp_missing:
        fmt = "jpeg"
    while True:
        try:
            data = _encode(crop, fmt, quality)
        except cv2.error as exc:
            if fmt != "webp":
                raise VisionError("encode_failed", f"JPEG encoder failed: {exc}") from exc
            data = None
        if data is None and fmt == "webp":
            _webp_missing = True
            log.warning("this OpenCV cannot write WebP; thumbnails fall back to JPEG")
            fmt = "jpeg"
            continue
        if data is None:
            raise VisionError("encode_failed", f"{fmt} encoder refused the thumbnail")
        if len(data) <= max_bytes or quality <= 20:
            return data
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
