"""Camera sources: a video file, an RTSP stream, a USB camera or a synthetic scene, one iterator shape.

Spec strings:
  /path/to/video.mp4                 a file (media time stamps from the frame rate)
  rtsp://host:554/stream             a live stream (wall-clock stamps)
  usb:0                              a V4L2 device index (wall-clock stamps)
  synthetic:seed=3,width=640,...     a SyntheticScene (see synthetic.SceneParams)
Opening and every read are bounded by `timeout_s`; a missing file or a dead stream raises
VisionError with a reason, never hangs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2

from edge.vision.errors import VisionError
from edge.vision.frame import Frame
from edge.vision.synthetic import SceneParams, SyntheticScene


class FrameSource:
    """An iterator of Frames; close() (or a with-block) releases the device."""

    def __init__(self, frames: Iterator[Frame], *, fps: float, width: int, height: int, release=None):
        self._frames = frames
        self.fps = fps
        self.width = width
        self.height = height
        self._release = release

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        return next(self._frames)

    def close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(spec: str, *, timeout_s: float = 5.0, scene: SyntheticScene | None = None) -> FrameSource:
    """Open a camera source from its spec string. `scene` lets a caller keep the synthetic ground truth."""
    if spec.startswith("synthetic:"):
        scene = scene or SyntheticScene(SceneParams.parse(spec.removeprefix("synthetic:")))
        p = scene.params
        return FrameSource(scene.frames(), fps=p.fps, width=p.width, height=p.height)
    if spec.startswith(("rtsp://", "rtsps://")):
        cap = _open_capture(spec, cv2.CAP_FFMPEG, timeout_s, reason="stream_unavailable")
        return _capture_source(cap, spec, live=True)
    if spec.startswith("usb:"):
        try:
            index = int(spec.removeprefix("usb:"))
        except ValueError as exc:
            raise VisionError("bad_spec", f"usb:N needs a device index, got {spec!r}") from exc
        cap = _open_capture(index, cv2.CAP_V4L2, timeout_s, reason="camera_unavailable")
        return _capture_source(cap, spec, live=True)
    path = Path(spec.removeprefix("file:"))
    if not path.is_file():
        raise VisionError("source_missing", f"no video file at {path}")
    cap = _open_capture(str(path), cv2.CAP_FFMPEG, timeout_s, reason="source_unreadable")
    return _capture_source(cap, str(path), live=False)


def _open_capture(target: str | int, api: int, timeout_s: float, *, reason: str) -> cv2.VideoCapture:
    ms = max(1, int(timeout_s * 1000))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    cap = cv2.VideoCapture(target, api, params)
    if not cap.isOpened():
        cap.release()
        raise VisionError(reason, f"cannot open {target!r} within {timeout_s:g} s")
    return cap


def _capture_source(cap: cv2.VideoCapture, name: str, *, live: bool) -> FrameSource:
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 0 < fps <= 240 else 25.0  # some streams report 0 or 90000
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def frames() -> Iterator[Frame]:
        index = 0
        while True:
            started = time.monotonic()
            ok, image = cap.read()
            if not ok or image is None:
                if not live:
                    return  # end of file
                waited = time.monotonic() - started
                raise VisionError("stream_lost", f"{name}: no frame after {waited:.1f} s")
            ts = time.time() if live else index / fps
            yield Frame(ts=ts, index=index, image=image)
            index += 1

    return FrameSource(frames(), fps=fps, width=width, height=height, release=cap.release)
