"""A deterministic synthetic street scene with its ground truth, for tests, demos and benchmarks.

A textured low-saturation background (sky, buildings, two sidewalks, a two-lane road), people
(head, torso, swinging arms and legs, in saturated clothing) walking at ~1.4 m/s, vehicles
(body, cabin with windows, wheels) at ~30-50 km/h, idle stretches, slow lighting drift, sudden
lighting steps and sensor noise. Everything depends only on the seed and the parameters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

from edge.vision.errors import VisionError
from edge.vision.frame import Frame
from edge.vision.scene_actors import Actor, draw_actor, make_actor, rects_overlap

_NOISE_BANK = 6
_WARMUP_S = 2.0  # nothing moves at first: a background model needs a few frames to learn.


@dataclass(frozen=True)
class SceneParams:
    seed: int = 0
    width: int = 640
    height: int = 360
    fps: float = 10.0
    people: int = 3  # people appearing over the whole duration (not at once)
    vehicles: int = 1
    duration: float = 60.0  # seconds
    noise: float = 3.0  # sensor noise sigma, grey levels
    light_steps: int = 1  # sudden global lighting changes (lights on/off, cloud)
    idle: float = 0.15  # share of the duration kept free of any mover, in one stretch

    @classmethod
    def parse(cls, text: str) -> SceneParams:
        """Parse 'seed=3,width=640,...' (the part after 'synthetic:'); unknown keys are refused."""
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = part.partition("=")
            if not sep or key not in kinds:
                raise VisionError("bad_spec", f"unknown synthetic parameter {part!r}")
            try:
                values[key] = int(raw) if kinds[key] in ("int", int) else float(raw)
            except ValueError as exc:
                raise VisionError("bad_spec", f"{key} must be a number, got {raw!r}") from exc
        params = cls(**values)  # type: ignore[arg-type]
        if params.width < 64 or params.height < 48 or params.fps <= 0 or params.duration <= 0:
            raise VisionError("bad_spec", "width>=64, height>=48, fps>0 and duration>0 are required")
        return params


@dataclass(frozen=True)
class GtBox:
    track_id: int
    label: str
    box: tuple[int, int, int, int]  # x, y, w, h in pixels


@dataclass(frozen=True)
class GtEvent:
    track_id: int
    label: str
    first_frame: int
    last_frame: int
    start: float  # seconds from the scene start
    end: float


@dataclass
class SyntheticScene:
    params: SceneParams
    actors: list[Actor] = field(init=False)

    def __post_init__(self) -> None:
        p = self.params
        rng = np.random.default_rng(p.seed)
        self.n_frames = max(1, round(p.duration * p.fps))
        self._background = _make_background(p.width, p.height, rng)
        self._noise = [
            rng.normal(0.0, p.noise, (p.height, p.width, 3)).astype(np.int16) for _ in range(_NOISE_BANK)
        ]
        self._idle = _idle_window(p, rng)
        self.actors = _schedule(p, rng, self._idle)
        self._steps = _light_steps(p, rng)
        self._drift_phase = float(rng.uniform(0, 2 * math.pi))
        self._boxes: list[list[GtBox]] | None = None

    # --- rendering -------------------------------------------------------------------------

    def gain(self, index: int) -> float:
        """Global light level: slow drift (+-12 % over ~40 s) times any sudden step in force."""
        t = index / self.params.fps
        g = 1.0 + 0.12 * math.sin(2 * math.pi * t / 40.0 + self._drift_phase)
        for start, end, factor in self._steps:
            if start <= t < end:
                g *= factor
        return g

    def render(self, index: int) -> np.ndarray:
        """The BGR image of frame `index`."""
        t = index / self.params.fps
        img = self._background.copy()
        for actor in sorted(self.actors, key=lambda a: a.depth):
            if actor.on_screen(t, self.params.width):
                draw_actor(img, actor, t)
        img = cv2.convertScaleAbs(img, alpha=self.gain(index))
        noise = np.roll(self._noise[index % _NOISE_BANK], (index * 37) % self.params.height, axis=0)
        return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    def frames(self, *, start_ts: float = 0.0) -> Iterator[Frame]:
        for i in range(self.n_frames):
            yield Frame(ts=start_ts + i / self.params.fps, index=i, image=self.render(i))

    # --- ground truth ----------------------------------------------------------------------

    def boxes(self, index: int) -> list[GtBox]:
        """Objects at least half inside frame `index`."""
        if self._boxes is None:
            self._boxes = [self._compute_boxes(i) for i in range(self.n_frames)]
        return self._boxes[index]

    def _compute_boxes(self, index: int) -> list[GtBox]:
        p, t = self.params, index / self.params.fps
        out = []
        for actor in self.actors:
            x, y, w, h = actor.box(t)
            x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(p.width, x + w), min(p.height, y + h)
            if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < 0.5 * w * h:
                continue
            box = (round(x0), round(y0), round(x1 - x0), round(y1 - y0))
            out.append(GtBox(actor.track_id, actor.label, box))
        return out

    def events(self) -> list[GtEvent]:
        """One event per object: the frames during which it is at least half visible."""
        seen: dict[int, list[int]] = {}
        labels: dict[int, str] = {}
        for i in range(self.n_frames):
            for b in self.boxes(i):
                seen.setdefault(b.track_id, []).append(i)
                labels[b.track_id] = b.label
        fps = self.params.fps
        return [
            GtEvent(tid, labels[tid], idx[0], idx[-1], idx[0] / fps, idx[-1] / fps)
            for tid, idx in sorted(seen.items())
        ]

    def motion_frames(self) -> list[bool]:
        """Per frame: does anything move on screen (for checking the motion gate)."""
        return [bool(self.boxes(i)) for i in range(self.n_frames)]

    def ground_truth(self) -> dict:
        return {
            "params": asdict(self.params),
            "idle": list(self._idle),
            "frames": [
                {"index": i, "ts": i / self.params.fps, "boxes": [asdict(b) for b in self.boxes(i)]}
                for i in range(self.n_frames)
            ],
            "events": [asdict(e) for e in self.events()],
        }

    def write_ground_truth(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.ground_truth()))
        return path

    def write_video(
        self, path: str | Path, *, fourcc: str = "mp4v", size: tuple[int, int] | None = None
    ) -> Path:
        """Encode the scene with cv2.VideoWriter (size=(w, h) rescales); returns the path."""
        path = Path(path)
        p = self.params
        out_size = size or (p.width, p.height)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), p.fps, out_size)
        if not writer.isOpened():
            raise VisionError("encode_failed", f"VideoWriter refused {fourcc} for {path.name}")
        try:
            for i in range(self.n_frames):
                img = self.render(i)
                if out_size != (p.width, p.height):
                    img = cv2.resize(img, out_size, interpolation=cv2.INTER_LINEAR)
                writer.write(img)
        finally:
            writer.release()
        return path


# --- scene construction ----------------------------------------------------------------------


def _low_sat(rng: np.random.Generator, v_lo: int, v_hi: int, s_max: int = 40) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, s_max), rng.integers(v_lo, v_hi)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _make_background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((h, w, 3), np.float32)
    bands = [(0.0, 0.38, 150, 210), (0.38, 0.48, 120, 160), (0.48, 0.80, 70, 100), (0.80, 1.0, 120, 160)]
    for y0, y1, v_lo, v_hi in bands:
        img[int(y0 * h) : int(y1 * h)] = _low_sat(rng, v_lo, v_hi)
    for _ in range(max(3, w // 90)):  # buildings with window grids
        bw, bh = int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.12, 0.3) * h)
        bx, by = int(rng.uniform(0, w - bw)), int(0.38 * h) - bh
        img[by : by + bh, bx : bx + bw] = _low_sat(rng, 80, 170)
        win = _low_sat(rng, 40, 90)
        step = max(6, bw // 6)
        for wx in range(bx + 3, bx + bw - 4, step):
            for wy in range(by + 4, by + bh - 6, step):
                img[wy : wy + step // 2, wx : wx + step // 2] = win
    for x in range(0, w, max(20, w // 16)):  # lane markings
        y = int(0.64 * h)
        img[y : y + max(1, h // 120), x : x + max(8, w // 40)] = (200, 200, 200)
    low = cv2.resize(rng.normal(0, 14, (max(2, h // 24), max(2, w // 24))).astype(np.float32), (w, h))
    img += low[..., None] + rng.normal(0, 5, (h, w, 1)).astype(np.float32)  # mottled, grainy texture
    return np.clip(img, 0, 255).astype(np.uint8)


def _idle_window(p: SceneParams, rng: np.random.Generator) -> tuple[float, float]:
    length = p.idle * p.duration
    if length <= 0:
        return (0.0, 0.0)
    start = float(rng.uniform(0.3, 0.7) * p.duration - length / 2)
    return (max(_WARMUP_S, start), max(_WARMUP_S, start) + length)


def _schedule(p: SceneParams, rng: np.random.Generator, idle: tuple[float, float]) -> list[Actor]:
    """Place every object in time so none is on screen during warm-up or the idle stretch."""
    actors: list[Actor] = []
    kinds = ["person"] * p.people + ["vehicle"] * p.vehicles
    rng.shuffle(kinds)
    for track_id, kind in enumerate(kinds, start=1):
        for _ in range(200):  # bounded: a crowded request may leave some objects out
            actor = make_actor(kind, track_id, p.width, p.height, rng, enter=0.0)
            span = actor.screen_time(p.width)
            latest = p.duration - min(span, p.duration * 0.5)
            if latest <= _WARMUP_S:
                break
            enter = float(rng.uniform(_WARMUP_S, latest))
            actor = actor.at(enter)
            t0, t1 = enter, enter + span
            if t0 < idle[1] and t1 > idle[0]:
                continue
            # One vehicle per lane at a time: overtaking inside a lane would be a rendering artefact.
            clash = any(
                o.label == "vehicle" and o.lane == actor.lane and rects_overlap(o, actor, p.width)
                for o in actors
            )
            if kind == "vehicle" and clash:
                continue
            actors.append(actor)
            break
    return actors


def _light_steps(p: SceneParams, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    steps = []
    for _ in range(p.light_steps):
        start = float(rng.uniform(_WARMUP_S + 1, max(_WARMUP_S + 1.5, p.duration * 0.9)))
        steps.append((start, start + float(rng.uniform(5, 20)), float(rng.choice([0.78, 1.22]))))
    return steps
