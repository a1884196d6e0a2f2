"""People and vehicles of the synthetic scene: motion over time and drawing."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

# lane -> (baseline as a share of frame height, size scale, direction)
PERSON_LANES = {"far_walk": (0.46, 0.72, 0), "near_walk": (0.95, 1.0, 0)}
VEHICLE_LANES = {"far_road": (0.63, 0.8, -1), "near_road": (0.78, 1.0, 1)}
PERSON_H = 0.16  # person height at scale 1, share of frame height (1.75 m)
VEHICLE_L = 0.30  # vehicle length at scale 1, share of frame height (4.5 m)


@dataclass(frozen=True)
class Actor:
    label: str
    track_id: int
    lane: str
    baseline: float  # pixel row of the feet / wheels
    size: float  # person height or vehicle length, pixels
    direction: int  # +1 left to right, -1 right to left
    speed: float  # pixels per second
    enter: float  # seconds
    pause_at: float  # pixels travelled before a pause (people only; inf: no pause)
    pause_s: float
    colors: tuple[tuple[int, int, int], ...]
    frame_w: int

    @property
    def depth(self) -> float:
        return self.baseline

    @property
    def width(self) -> float:
        return self.size * (0.36 if self.label == "person" else 1.0)

    @property
    def height(self) -> float:
        return self.size * (1.0 if self.label == "person" else 0.45)

    def travel(self, frame_w: int) -> float:
        return frame_w + self.width + 4.0

    def screen_time(self, frame_w: int) -> float:
        return self.travel(frame_w) / self.speed + (self.pause_s if math.isfinite(self.pause_at) else 0.0)

    def at(self, enter: float) -> Actor:
        return replace(self, enter=enter)

    def distance(self, t: float) -> float:
        d = self.speed * (t - self.enter)
        if d > self.pause_at:
            d = max(self.pause_at, d - self.speed * self.pause_s)
        return d

    def on_screen(self, t: float, frame_w: int) -> bool:
        return t >= self.enter and self.distance(t) <= self.travel(frame_w)

    def box(self, t: float) -> tuple[float, float, float, float]:
        """Full (unclipped) box x, y, w, h at time t; far outside the frame when not on screen."""
        if t < self.enter:
            return (-1e6, 0.0, self.width, self.height)
        d = self.distance(t)
        x = -self.width - 2.0 + d if self.direction > 0 else self.frame_w + 2.0 - d
        return (x, self.baseline - self.height, self.width, self.height)


def make_actor(
    kind: str, track_id: int, frame_w: int, frame_h: int, rng: np.random.Generator, *, enter: float
) -> Actor:
    lanes = PERSON_LANES if kind == "person" else VEHICLE_LANES
    lane = str(rng.choice(sorted(lanes)))
    base, scale, direction = lanes[lane]
    scale *= float(rng.uniform(0.9, 1.1))
    if kind == "person":
        size = PERSON_H * frame_h * scale
        speed = 1.4 * float(rng.uniform(0.8, 1.2)) * size / 1.75
        direction = int(rng.choice([-1, 1]))
        pause = rng.random() < 0.3
        pause_at = float(rng.uniform(0.3, 0.6) * frame_w) if pause else math.inf
        pause_s = float(rng.uniform(1, 4)) if pause else 0.0
        colors = (_saturated(rng, 140, 230), _saturated(rng, 140, 200), _skin(rng))
    else:
        size = VEHICLE_L * frame_h * scale
        speed = float(rng.uniform(7, 12)) * size / 4.5
        pause_at, pause_s = math.inf, 0.0
        colors = (_saturated(rng, 130, 220),)
    return Actor(
        label=kind,
        track_id=track_id,
        lane=lane,
        baseline=base * frame_h,
        size=size,
        direction=direction,
        speed=speed,
        enter=enter,
        pause_at=pause_at,
        pause_s=pause_s,
        colors=colors,
        frame_w=frame_w,
    )


def rects_overlap(a: Actor, b: Actor, frame_w: int) -> bool:
    """Do the two actors' on-screen time intervals overlap."""
    a1, b1 = a.enter + a.screen_time(frame_w), b.enter + b.screen_time(frame_w)
    return a.enter < b1 and b.enter < a1


def draw_actor(img: np.ndarray, actor: Actor, t: float) -> None:
    x, _, w, _ = actor.box(t)
    if actor.label == "person":
        _draw_person(img, actor, x + w / 2, actor.baseline, actor.size, actor.distance(t))
    else:
        _draw_vehicle(img, actor, x, actor.baseline, actor.size)


def _draw_person(img: np.ndarray, a: Actor, cx: float, feet: float, h: float, dist: float) -> None:
    shirt, pants, skin = a.colors[0], a.colors[1], a.colors[2]
    swing = math.sin(dist / (0.35 * h) * math.pi)  # one stride per ~0.7 body heights
    hip = (cx, feet - 0.47 * h)
    leg_t = max(2, round(0.1 * h))
    for s in (swing, -swing):
        _line(img, hip, (cx + 0.12 * h * s, feet - leg_t / 2), pants, leg_t)
    shoulder = (cx, feet - 0.78 * h)
    arm_t = max(2, round(0.065 * h))
    for s in (-swing, swing):
        _line(img, shoulder, (cx + 0.1 * h * s, feet - 0.48 * h), shirt, arm_t)
    center = (round(cx), round(feet - 0.63 * h))
    cv2.ellipse(img, center, (max(2, round(0.14 * h)), max(3, round(0.19 * h))), 0, 0, 360, shirt, -1)
    head = (round(cx), round(feet - 0.9 * h))
    cv2.circle(img, head, max(2, round(0.09 * h)), skin, -1, cv2.LINE_AA)


def _draw_vehicle(img: np.ndarray, a: Actor, x: float, bottom: float, length: float) -> None:
    paint = a.colors[0]
    lo, r = length, 0.09 * length

    def p(fx: float, fy: float) -> tuple[int, int]:
        # fx along the vehicle from its rear; mirrored so the cabin sits towards the front.
        fx = fx if a.direction > 0 else 1.0 - fx
        return (round(x + fx * lo), round(bottom - fy * lo))

    cv2.rectangle(img, p(0.0, 0.07), p(1.0, 0.30), paint, -1)
    cv2.rectangle(img, p(0.22, 0.30), p(0.74, 0.45), paint, -1)
    glass = (90, 70, 60)
    cv2.rectangle(img, p(0.27, 0.32), p(0.47, 0.42), glass, -1)
    cv2.rectangle(img, p(0.50, 0.32), p(0.70, 0.42), glass, -1)
    cv2.rectangle(img, p(0.95, 0.18), p(1.0, 0.24), (120, 230, 250), -1)  # headlight
    for fx in (0.2, 0.8):
        c = p(fx, r / lo)
        cv2.circle(img, c, max(2, round(r)), (25, 25, 25), -1, cv2.LINE_AA)


def _line(img: np.ndarray, a: tuple[float, float], b: tuple[float, float], color, thick: int) -> None:
    cv2.line(img, (round(a[0]), round(a[1])), (round(b[0]), round(b[1])), color, thick, cv2.LINE_AA)


def _saturated(rng: np.random.Generator, v_lo: int, v_hi: int) -> tuple[int, int, int]:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(190, 256), rng.integers(v_lo, v_hi)]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return (int(b), int(g), int(r))


def _skin(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.uint8([[[rng.integers(8, 20), rng.integers(70, 130), rng.integers(120, 220)]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return (int(b), int(g), int(r))
