"""Event builder: tracks become events with a best-frame thumbnail and a pre/post clip.

One event per object: an event starts when a track is confirmed, has moved and been seen whole
(edge.vision.evidence) and passes the label filter, its score floor and the zones (it may
qualify later, e.g. when it walks into a zone or starts to move); it ends when the track is
lost (end_after_s without the object). The thumbnail is taken from the frame where the object
was best seen: whole in view first, then score x sqrt(area). Each
event is reported twice with the same event_id: at start (end None, no media) so an alert can
go out at once, and when complete (end set, thumbnail attached, and a clip when the config
records one: `clip_upload` says whether it goes up at once or stays on the device).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from edge.vision.config import DetectionConfig
from edge.vision.frame import Frame
from edge.vision.media import CLIP_CONTENT_TYPE, encode_clip, encode_thumbnail
from edge.vision.tracker import Track, TrackUpdate
from protocol.images import encode_inline_thumbnail, image_content_type

DECIMALS = 3  # of event times (ms), scores and normalised boxes on the wire


@dataclass(frozen=True)
class DetectionEvent:
    event_id: str  # uuid4 hex; the same for the start and the end report
    camera: str
    label: str
    score: float
    bbox: tuple[float, float, float, float]  # x, y, w, h normalised to the frame, origin top-left
    start: float
    end: float | None  # None: the event has just started
    zone: str | None
    track_id: int
    thumbnail: bytes | None = None  # JPEG or WebP: protocol.images.image_content_type tells
    clip: bytes | None = None
    clip_content_type: str = CLIP_CONTENT_TYPE
    clip_upload: bool = False  # upload the clip at once (clip_labels); else keep it on the device

    @property
    def thumbnail_content_type(self) -> str | None:
        return image_content_type(self.thumbnail) if self.thumbnail else None

    def metadata(self, *, inline_thumbnail: bool = False) -> dict:
        """The event as it goes in up/events (protocol.up.Detection shape).

        Sent twice per event, so only what carries information: times to the millisecond,
        score and box to 0.001 (~2 px of a 1920 px frame), and no `end`, `zone` or `media`
        while they are empty (the protocol's defaults). The thumbnail goes inline (base64)
        when `inline_thumbnail`, else by sha256 as media that follows through up/media; a
        clip is named only if it is uploaded at once (a kept clip may never be).
        """
        out: dict = {
            "event_id": self.event_id,
            "camera": self.camera,
            "label": self.label,
            "score": round(float(self.score), DECIMALS),
            "bbox": round_box(self.bbox),
            "start": round(float(self.start), DECIMALS),
        }
        if self.end is not None:
            out["end"] = max(out["start"], round(float(self.end), DECIMALS))
        if self.zone:
            out["zone"] = self.zone
        media = []
        if self.thumbnail and inline_thumbnail:
            out["thumbnail"] = encode_inline_thumbnail(self.thumbnail)
        elif self.thumbnail:
            media.append({"kind": "snapshot", "sha256": hashlib.sha256(self.thumbnail).hexdigest()})
        if self.clip and self.clip_upload:
            media.append({"kind": "clip", "sha256": hashlib.sha256(self.clip).hexdigest()})
        if media:
            out["media"] = media
        return out


def round_box(box: tuple[float, float, float, float]) -> list[float]:
    """[x, y, w, h] to DECIMALS places with the far edges rounded, not the sizes, so that
    x + w <= 1 still holds after rounding. Python floats: a detector's numpy floats would
    stop the message encoder."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = round(x, DECIMALS), round(y, DECIMALS)
    x1, y1 = round(x + w, DECIMALS), round(y + h, DECIMALS)
    return [x0, y0, round(max(0.0, x1 - x0), DECIMALS), round(max(0.0, y1 - y0), DECIMALS)]


@dataclass
class _Open:
    event_id: str
    track: Track
    start: float
    zone: str | None
    frames: list[np.ndarray]
    best_key: tuple = ()
    best_image: np.ndarray | None = None
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    end: float | None = None


class EventBuilder:
    def __init__(
        self,
        config: DetectionConfig,
        *,
        camera: str,
        clip_width: int = 320,
        clip_max_s: float = 20.0,
    ) -> None:
        self.config = config
        self.camera = camera
        self.clip_width = clip_width
        self.clip_max_frames = max(1, round(clip_max_s * config.sample_fps))
        self._ring: deque[tuple[float, np.ndarray]] = deque()
        self._open: dict[int, _Open] = {}
        self._closing: list[_Open] = []
        self._size = (1, 1)

    def update(self, frame: Frame, tracks: TrackUpdate) -> list[DetectionEvent]:
        h, w = frame.image.shape[:2]
        self._size = (w, h)
        small = self._small(frame.image)
        self._ring.append((frame.ts, small))
        while self._ring and self._ring[0][0] < frame.ts - self.config.clip_pre_s - 1e-6:
            self._ring.popleft()
        out: list[DetectionEvent] = []
        for track in tracks.active:
            ev = self._open.get(track.track_id)
            if ev is None:
                ev = self._maybe_start(track)
                if ev is None:
                    continue
                out.append(self._report(ev))
            self._consider_best(ev, track, frame.image)
        for ev in self._open.values():
            if len(ev.frames) < self.clip_max_frames and ev.frames[-1] is not small:
                ev.frames.append(small)
        for track in tracks.lost:
            ev = self._open.pop(track.track_id, None)
            if ev is not None:
                ev.end = track.last_ts
                self._closing.append(ev)
        still = []
        for ev in self._closing:
            if len(ev.frames) < self.clip_max_frames and ev.frames[-1] is not small:
                ev.frames.append(small)
            if frame.ts >= (ev.end or 0.0) + self.config.clip_post_s - 1e-6:
                out.append(self._finish(ev))
            else:
                still.append(ev)
        self._closing = still
        return out

    def flush(self, lost: list[Track]) -> list[DetectionEvent]:
        """End of stream: finish every open and closing event with what was recorded."""
        for track in lost:
            ev = self._open.pop(track.track_id, None)
            if ev is not None:
                ev.end = track.last_ts
                self._closing.append(ev)
        for ev in self._open.values():
            ev.end = ev.track.last_ts
            self._closing.append(ev)
        self._open = {}
        done = [self._finish(ev) for ev in self._closing]
        self._closing = []
        return done

    def _small(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if w <= self.clip_width:
            return image.copy()
        size = (self.clip_width, max(2, round(h * self.clip_width / w / 2) * 2))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def _norm(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        w, h = self._size
        x0, y0 = min(max(box[0] / w, 0.0), 1.0), min(max(box[1] / h, 0.0), 1.0)
        x1, y1 = min(max((box[0] + box[2]) / w, 0.0), 1.0), min(max((box[1] + box[3]) / h, 0.0), 1.0)
        return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))  # not numpy: see round_box

    def _maybe_start(self, track: Track) -> _Open | None:
        cfg = self.config
        if not (track.moved and track.whole):
            return None
        if not cfg.label_allowed(track.label) or track.best_score < cfg.score_floor(track.label):
            return None
        zone = cfg.zone_for(self._norm(track.box))
        if zone is None:
            return None
        pre = [img for _, img in self._ring][-self.clip_max_frames :]
        ev = _Open(uuid.uuid4().hex, track, track.first_ts, zone or None, pre)
        self._open[track.track_id] = ev
        return ev

    def _consider_best(self, ev: _Open, track: Track, image: np.ndarray) -> None:
        w, h = self._size
        x, y, bw, bh = track.box
        inside = x > 1 and y > 1 and x + bw < w - 1 and y + bh < h - 1  # whole object in view
        key = (inside, track.score * float(np.sqrt(bw * bh)))
        if not ev.best_key or key > ev.best_key:
            ev.best_key, ev.best_image, ev.best_box = key, image.copy(), track.box

    def _report(self, ev: _Open, *, final: bool = False) -> DetectionEvent:
        thumb = clip = None
        cfg = self.config
        if final and ev.best_image is not None:
            thumb = encode_thumbnail(
                ev.best_image,
                ev.best_box,
                max_side=cfg.thumbnail_max_side,
                quality=cfg.thumbnail_quality,
                fmt=cfg.thumbnail_format,
            )
            if cfg.clip_recorded(ev.track.label):
                clip = encode_clip(ev.frames, fps=cfg.sample_fps)
        return DetectionEvent(
            event_id=ev.event_id,
            camera=self.camera,
            label=ev.track.label,
            score=float(ev.track.best_score),
            bbox=self._norm(ev.best_box if ev.best_image is not None else ev.track.box),
            start=ev.start,
            end=ev.end if final else None,
            zone=ev.zone,
            track_id=ev.track.track_id,
            thumbnail=thumb,
            clip=clip,
            clip_upload=clip is not None and cfg.clip_upload(ev.track.label),
        )

    def _finish(self, ev: _Open) -> DetectionEvent:
        return self._report(ev, final=True)
