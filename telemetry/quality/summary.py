"""Adding up quality windows: the one arithmetic the rollups and the rollout gates share.

Counters add. Latency percentiles of different windows cannot be merged exactly without the runs,
so a summary's p50/p95 are the frame-weighted means of its windows' percentiles (each window is
one device over one telemetry interval, so a slow device weighs by the frames it ran). Rates are
per camera-hour: frames, detections and crashes over the summed window seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class QualitySummary:
    devices: set[int] = field(default_factory=set)
    windows: int = 0
    seconds: float = 0.0
    frames: int = 0
    dropped_frames: int = 0
    crashes: int = 0
    detections: dict[str, int] = field(default_factory=dict)
    matched: int = 0
    reference: int = 0
    extra: int = 0
    _p50: float = 0.0  # sums of percentile x frames, over the frames that had latencies
    _p95: float = 0.0
    _latency_frames: int = 0
    _score: float = 0.0  # sum of score_mean x detections
    _scored: int = 0
    _cpu: float = 0.0  # sum of cpu_pct x seconds
    _cpu_s: float = 0.0
    temp_c_max: float | None = None

    def add(self, row: Mapping[str, Any], *, device: int | None = None) -> None:
        """One window or rollup row (the QualityFigures fields)."""
        if device is not None:
            self.devices.add(device)
        self.windows += int(row.get("windows") or 1)
        seconds, frames = float(row["seconds"]), int(row["frames"])
        self.seconds += seconds
        self.frames += frames
        self.dropped_frames += int(row.get("dropped_frames") or 0)
        self.crashes += int(row.get("crashes") or 0)
        self.matched += int(row.get("matched") or 0)
        self.reference += int(row.get("reference") or 0)
        self.extra += int(row.get("extra") or 0)
        found = 0
        for label, n in (row.get("detections") or {}).items():
            self.detections[label] = self.detections.get(label, 0) + int(n)
            found += int(n)
        if row.get("latency_p50_ms") is not None and frames:
            self._p50 += row["latency_p50_ms"] * frames
            self._p95 += row["latency_p95_ms"] * frames
            self._latency_frames += frames
        if row.get("score_mean") is not None and found:
            self._score += row["score_mean"] * found
            self._scored += found
        if row.get("cpu_pct") is not None:
            self._cpu += row["cpu_pct"] * seconds
            self._cpu_s += seconds
        temp = row.get("temp_c")
        if temp is not None and (self.temp_c_max is None or temp > self.temp_c_max):
            self.temp_c_max = temp

    @property
    def latency_p50_ms(self) -> float | None:
        return self._p50 / self._latency_frames if self._latency_frames else None

    @property
    def latency_p95_ms(self) -> float | None:
        return self._p95 / self._latency_frames if self._latency_frames else None

    @property
    def fps(self) -> float | None:
        """Frames the model ran on per second, per camera."""
        return self.frames / self.seconds if self.seconds > 0 else None

    @property
    def score_mean(self) -> float | None:
        return self._score / self._scored if self._scored else None

    @property
    def cpu_pct(self) -> float | None:
        return self._cpu / self._cpu_s if self._cpu_s else None

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    def per_hour(self, label: str) -> float | None:
        """Detections of `label` per camera-hour."""
        return self.detections.get(label, 0) / self.hours if self.seconds > 0 else None

    @property
    def crashes_per_hour(self) -> float | None:
        return self.crashes / self.hours if self.seconds > 0 else None

    @property
    def dropped_share(self) -> float | None:
        offered = self.frames + self.dropped_frames
        return self.dropped_frames / offered if offered else None

    @property
    def recall(self) -> float | None:
        """Shadow: share of the active model's detections the candidate found."""
        return self.matched / self.reference if self.reference else None

    @property
    def extra_ratio(self) -> float | None:
        """Shadow: detections the candidate added, per detection of the active model."""
        return self.extra / self.reference if self.reference else None

    def figures(self) -> dict[str, Any]:
        """The rollup row's fields (QualityFigures), rounded for storage."""
        return {
            "seconds": round(self.seconds, 3),
            "frames": self.frames,
            "dropped_frames": self.dropped_frames,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "detections": dict(sorted(self.detections.items())),
            "score_mean": self.score_mean,
            "crashes": self.crashes,
            "cpu_pct": self.cpu_pct,
            "temp_c": self.temp_c_max,
            "matched": self.matched,
            "reference": self.reference,
            "extra": self.extra,
        }

    def as_dict(self) -> dict[str, Any]:
        """For the API and the UI: the cohort's size and its rates."""

        def r(x: float | None, n: int = 3) -> float | None:
            return None if x is None else round(x, n)

        return {
            "devices": len(self.devices),
            "windows": self.windows,
            "hours": r(self.hours, 4),
            "frames": self.frames,
            "latency_p50_ms": r(self.latency_p50_ms),
            "latency_p95_ms": r(self.latency_p95_ms),
            "fps": r(self.fps),
            "detections_per_hour": {k: r(self.per_hour(k), 2) for k in sorted(self.detections)},
            "crashes_per_hour": r(self.crashes_per_hour),
            "dropped_share": r(self.dropped_share, 4),
            "recall": r(self.recall, 4),
            "extra_ratio": r(self.extra_ratio, 4),
            "reference": self.reference,
        }


def summarize(rows: Iterable[Mapping[str, Any]]) -> QualitySummary:
    """Rows with a `device_id` and the QualityFigures fields -> one summary."""
    out = QualitySummary()
    for row in rows:
        out.add(row, device=row.get("device_id"))
    return out
