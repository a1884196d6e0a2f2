"""Per-model quality on the device: what each model version did over a telemetry window.

The camera thread feeds a QualityMeter (one per model version and role) with every detector run;
the telemetry batcher takes a window's figures (protocol.up.ModelQuality) with each message and the
meter starts the next window. Latency percentiles come from the window's runs (bounded by
MAX_RUNS: beyond it every other run is kept, so a long window still has a fair spread).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from edge.vision.detectors import Detection, iou
from protocol.up import MAX_LABELS
from protocol.vocab import SHADOW_IOU

MAX_RUNS = 4096
CRASH_MARKER = "agent.running"  # in the state dir while the agent runs; found at start: it crashed


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(rank) - 1]


def agreement(
    active: Sequence[Detection], candidate: Sequence[Detection], *, threshold: float = SHADOW_IOU
) -> tuple[int, int, int]:
    """(matched, reference, extra) of a candidate's detections against the active model's on one frame.

    Greedy one-to-one matching, best IoU first, same label only: `matched` active detections the
    candidate found, `reference` active detections in all, `extra` candidate detections matching none.
    """
    pairs = sorted(
        (
            (iou(a.box, c.box), i, j)
            for i, a in enumerate(active)
            for j, c in enumerate(candidate)
            if a.label == c.label
        ),
        reverse=True,
    )
    used_a: set[int] = set()
    used_c: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i in used_a or j in used_c:
            continue
        used_a.add(i)
        used_c.add(j)
    return len(used_a), len(active), len(candidate) - len(used_c)


class QualityMeter:
    """One model version in one role ("active" or "shadow"); thread-safe (camera thread writes,
    the agent loop takes windows)."""

    def __init__(
        self,
        *,
        model: str,
        version: str,
        role: str = "active",
        wall: Callable[[], float] = time.time,
        system: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.model, self.version, self.role = model, version, role
        self._wall = wall
        self._system = system
        self._lock = threading.Lock()
        self._reset(wall())

    def _reset(self, start: float) -> None:
        self._start = start
        self._latency: list[float] = []
        self._stride = 1  # keep every n-th run's latency once MAX_RUNS is reached
        self._frames = self._dropped = self._crashes = 0
        self._labels: Counter[str] = Counter()
        self._score_sum = 0.0
        self._matched = self._reference = self._extra = 0

    def run(self, *, latency_ms: float, detections: Sequence[Detection]) -> None:
        """One detector run on one frame."""
        with self._lock:
            self._frames += 1
            if self._frames % self._stride == 0:
                self._latency.append(latency_ms)
                if len(self._latency) >= MAX_RUNS:
                    self._latency = self._latency[::2]
                    self._stride *= 2
            for d in detections:
                self._labels[d.label] += 1
                self._score_sum += d.score

    def compare(self, *, matched: int, reference: int, extra: int) -> None:
        """Shadow: this candidate's agreement with the active model on one frame (see agreement())."""
        with self._lock:
            self._matched += matched
            self._reference += reference
            self._extra += extra

    def dropped(self, n: int = 1) -> None:
        with self._lock:
            self._dropped += n

    def crashed(self, n: int = 1) -> None:
        with self._lock:
            self._crashes += n

    @property
    def frames(self) -> int:
        return self._frames

    def window(self) -> dict[str, Any] | None:
        """The figures since the previous window (protocol.up.ModelQuality), then a new window.

        None if the model neither ran nor crashed (nothing to say)."""
        end = self._wall()
        with self._lock:
            if not self._frames and not self._crashes:
                self._reset(end)
                return None
            detections = sum(self._labels.values())
            span = max(end - self._start, 1e-3)
            out: dict[str, Any] = {
                "model": self.model,
                "version": self.version,
                "role": self.role,
                "start": round(self._start, 3),
                "end": round(max(end, self._start), 3),
                "frames": self._frames,
                "dropped_frames": self._dropped,
                "fps": round(self._frames / span, 3),
                "detections": dict(self._labels.most_common(MAX_LABELS)),
                "crashes": self._crashes,
            }
            p50, p95 = percentile(self._latency, 50), percentile(self._latency, 95)
            if p50 is not None and p95 is not None:
                out["latency_p50_ms"], out["latency_p95_ms"] = round(p50, 3), round(p95, 3)
            if detections:
                out["score_mean"] = round(min(1.0, self._score_sum / detections), 4)
            if self.role == "shadow":
                out |= {"matched": self._matched, "reference": self._reference, "extra": self._extra}
            self._reset(end)
        if self._system is not None:
            out |= {k: v for k, v in self._system().items() if v is not None}
        return out


def process_system() -> Callable[[], dict[str, Any]]:
    """CPU % of this process (share of all cores, since the previous call) and the temperature."""
    import psutil

    from edge.telemetry import read_temperature

    proc = psutil.Process()
    cores = psutil.cpu_count() or 1
    proc.cpu_percent(interval=None)  # baseline

    def read() -> dict[str, Any]:
        return {
            "cpu_pct": round(min(100.0, proc.cpu_percent(interval=None) / cores), 2),
            "temp_c": read_temperature(),
        }

    return read


class ShadowRun:
    """A candidate model run beside the active one: on every n-th frame the active model runs on
    (n = 1 / share), while its detector time stays within `cpu_budget_pct` of wall time (one core);
    its detections are compared with the active model's on the same frame (agreement())."""

    BUDGET_WINDOW_S = 30.0  # the budget is kept over this window, so a burst cannot starve it for ever

    def __init__(
        self,
        detector: Any,
        meter: QualityMeter,
        *,
        share: float,
        cpu_budget_pct: float,
        score_floor: Callable[[str], float] = lambda label: 0.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not 0 < share <= 1 or not 0 < cpu_budget_pct <= 100:
            raise ValueError("share must lie in (0, 1] and cpu_budget_pct in (0, 100]")
        self.detector, self.meter = detector, meter
        self.every = max(1, round(1 / share))
        self.budget = cpu_budget_pct / 100
        self._floor = score_floor
        self._clock = clock
        self._n = 0
        self._busy_s = 0.0
        self._since = clock()
        self.over_budget = 0  # frames skipped to keep within the budget

    def offer(self, image: Any, active: Sequence[Detection]) -> bool:
        """One frame the active model ran on, with its detections; True if the candidate ran."""
        self._n += 1
        if self._n % self.every:
            return False
        now = self._clock()
        if now - self._since > self.BUDGET_WINDOW_S:
            self._since, self._busy_s = now, 0.0
        if self._busy_s > self.budget * (now - self._since):
            self.over_budget += 1
            return False
        try:
            found = self.detector.detect(image, motion=None)
        except Exception:  # a candidate that breaks is what shadow mode is for: count it, go on
            self._busy_s += self._clock() - now
            self.meter.crashed()
            return False
        spent = self._clock() - now
        self._busy_s += spent
        found = [d for d in found if d.score >= self._floor(d.label)]
        self.meter.run(latency_ms=1000.0 * spent, detections=found)
        matched, reference, extra = agreement(active, found)
        self.meter.compare(matched=matched, reference=reference, extra=extra)
        return True
