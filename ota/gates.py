"""Quality gates: the arithmetic that compares a wave's cameras with a control cohort. Pure: no ORM.

A gate is a set of checks, each with a threshold from the deployment's `gates` settings. Every
check needs its minimum sample first: too few devices, frames or detections keep it *waiting*,
never passing. A gate fails if any check fails, waits while any check waits, passes when all pass.

Relative changes are candidate / control - 1 (latency +0.30 is 30% slower; fps -0.20 is 20% fewer
frames; detections per hour of a label +/-). Shadow checks read the candidate's agreement with the
active model on the same frames (telemetry.quality.summary.QualitySummary.recall / extra_ratio).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from telemetry.quality.summary import QualitySummary

GateState = Literal["waiting", "passed", "failed"]
ON_FAIL = ("pause", "abort")

# Settings of a deployment's `gates` (all optional; {} = no quality gate), with their bounds.
# Thresholds are ratios; a check whose threshold is absent is not made.
GATE_SETTINGS: dict[str, tuple[type, float, float]] = {
    "min_devices": (int, 1, 10_000),  # per cohort
    "min_frames": (int, 1, 10**9),  # per cohort
    "min_detections": (int, 1, 10**9),  # per label (detection rate) and shadow reference
    "latency_p50_regression": (float, 0.0, 100.0),  # max median increase over control
    "latency_p95_regression": (float, 0.0, 100.0),  # max p95 increase over control
    "fps_drop": (float, 0.0, 1.0),  # max fps decrease below control
    "detection_rate_change": (float, 0.0, 100.0),  # max |change| of detections/hour, per label
    "shadow_recall_min": (float, 0.0, 1.0),  # min share of the active model's detections found
    "shadow_extra_max": (float, 0.0, 100.0),  # max extra detections per active-model detection
    "crash_rate_max": (float, 0.0, 10**6),  # max crashes per camera-hour above control
    "max_wait_s": (int, 1, 30 * 86400),  # a gate still waiting this long after its soak pauses
}
DEFAULTS = {"min_devices": 1, "min_frames": 300, "min_detections": 20}
LATENCY = {"latency_p50_regression": "latency_p50_ms", "latency_p95_regression": "latency_p95_ms"}


DEFAULT_SHADOW_SHARE = 0.2  # of the frames the active model runs on (bench/gates.py: its cost on a camera)


def check_shadow(shadow: Any) -> dict[str, Any]:
    """The deployment's `shadow` cleaned: {"share", "cpu_budget_pct", "soak_s"}; ValueError otherwise."""
    if shadow in (None, {}):
        return {}
    if not isinstance(shadow, dict):
        raise ValueError('shadow must be an object, e.g. {"share": 0.2, "cpu_budget_pct": 25, "soak_s": 600}')
    unknown = sorted(set(shadow) - {"share", "cpu_budget_pct", "soak_s"})
    if unknown:
        raise ValueError(f"unknown shadow setting shadow.{unknown[0]} (known: share, cpu_budget_pct, soak_s)")
    out: dict[str, Any] = {}
    for key, default, low, high, kind in (
        ("share", DEFAULT_SHADOW_SHARE, 0.0, 1.0, float),
        ("cpu_budget_pct", 25.0, 0.0, 100.0, float),
        ("soak_s", 0, 0, 30 * 86400, int),
    ):
        value = shadow.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and value != int(value))
        ):
            raise ValueError(f"shadow.{key} must be {'an integer' if kind is int else 'a number'}")
        if not (low < value <= high if kind is float else low <= value <= high):
            raise ValueError(f"shadow.{key} must be within {'(' if kind is float else ''}{low:g}..{high:g}")
        out[key] = kind(value)
    return out


def check_settings(gates: Any, *, shadow: bool) -> dict[str, Any]:
    """The deployment's `gates` cleaned; ValueError naming the field for anything else."""
    if gates in (None, {}):
        return {}
    if not isinstance(gates, dict):
        raise ValueError('gates must be an object of thresholds, e.g. {"latency_p95_regression": 0.2}')
    out: dict[str, Any] = {}
    for key, value in gates.items():
        if key == "on_fail":
            if value not in ON_FAIL:
                raise ValueError(f"gates.on_fail is one of: {', '.join(ON_FAIL)}")
            out[key] = value
            continue
        if key not in GATE_SETTINGS:
            raise ValueError(f"unknown gate setting gates.{key} (known: {', '.join(GATE_SETTINGS)}, on_fail)")
        kind, low, high = GATE_SETTINGS[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and value != int(value))
        ):
            raise ValueError(f"gates.{key} must be {'an integer' if kind is int else 'a number'}")
        if not low <= value <= high:
            raise ValueError(f"gates.{key} must be within {low:g}..{high:g}")
        out[key] = kind(value)
    if not shadow and any(k in out for k in ("shadow_recall_min", "shadow_extra_max")):
        raise ValueError(
            "gates.shadow_recall_min and shadow_extra_max need a shadow deployment (shadow.share)"
        )
    if not any(k in out for k in GATE_SETTINGS if k not in (*DEFAULTS, "max_wait_s")):
        raise ValueError("gates names no threshold to check")
    return out


@dataclass(frozen=True)
class Check:
    """One metric's verdict. `change` is relative (see module doc), except crashes (per hour, absolute)."""

    metric: str
    state: GateState
    threshold: float | None = None
    candidate: float | None = None
    control: float | None = None
    change: float | None = None
    label: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("candidate", "control", "change"):
            if out[k] is not None:
                out[k] = round(out[k], 4)
        return {k: v for k, v in out.items() if v is not None and v != ""}


def _relative(candidate: float | None, control: float | None) -> float | None:
    if candidate is None or control is None or control <= 0:
        return None
    return candidate / control - 1.0


def _sample(name: str, s: QualitySummary, settings: dict[str, Any]) -> str | None:
    need_devices = settings.get("min_devices", DEFAULTS["min_devices"])
    need_frames = settings.get("min_frames", DEFAULTS["min_frames"])
    if len(s.devices) < need_devices:
        return f"{name}: {len(s.devices)} of {need_devices} device(s) reporting"
    if s.frames < need_frames:
        return f"{name}: {s.frames} of {need_frames} frames"
    return None


def evaluate(
    candidate: QualitySummary, control: QualitySummary, settings: dict[str, Any], *, shadow: bool
) -> tuple[GateState, list[Check]]:
    """The gate's verdict and every check behind it."""
    checks: list[Check] = []
    short = _sample("candidate", candidate, settings)
    compared = any(k in settings for k in (*LATENCY, "fps_drop", "detection_rate_change"))
    short_control = (
        _sample("control", control, settings) if compared or "crash_rate_max" in settings else None
    )
    if short or short_control:
        checks.append(Check("sample", "waiting", detail="; ".join(x for x in (short, short_control) if x)))
        return "waiting", checks
    min_detections = settings.get("min_detections", DEFAULTS["min_detections"])

    state: GateState
    for setting, metric in LATENCY.items():
        if setting not in settings:
            continue
        limit = settings[setting]
        cand, ctrl = getattr(candidate, metric), getattr(control, metric)
        change = _relative(cand, ctrl)
        state = "waiting" if change is None else ("failed" if change > limit else "passed")
        checks.append(Check(metric, state, limit, cand, ctrl, change))
    if "fps_drop" in settings and not shadow:  # a shadow runs on a share of the frames: no fps to compare
        limit = settings["fps_drop"]
        change = _relative(candidate.fps, control.fps)
        state = "waiting" if change is None else ("failed" if -change > limit else "passed")
        checks.append(Check("fps", state, limit, candidate.fps, control.fps, change))
    if "detection_rate_change" in settings and not shadow:  # in shadow, agreement says it better
        limit = settings["detection_rate_change"]
        labels = sorted(
            label
            for label in set(candidate.detections) | set(control.detections)
            if max(candidate.detections.get(label, 0), control.detections.get(label, 0)) >= min_detections
        )
        for label in labels:
            cand, ctrl = candidate.per_hour(label), control.per_hour(label)
            if not control.detections.get(label):
                # A label the old model never saw at this rate: any rate is an unbounded change.
                checks.append(
                    Check("detections_per_hour", "failed", limit, cand, ctrl, None, label, "new label")
                )
                continue
            change = _relative(cand, ctrl)
            state = "failed" if change is not None and abs(change) > limit else "passed"
            checks.append(Check("detections_per_hour", state, limit, cand, ctrl, change, label))
    if shadow and ("shadow_recall_min" in settings or "shadow_extra_max" in settings):
        if candidate.reference < min_detections:
            detail = f"{candidate.reference} of {min_detections} detections of the active model compared"
            checks.append(Check("shadow_agreement", "waiting", detail=detail))
        else:
            if "shadow_recall_min" in settings:
                limit = settings["shadow_recall_min"]
                recall = candidate.recall
                state = "failed" if recall is not None and recall < limit else "passed"
                checks.append(Check("shadow_recall", state, limit, recall))
            if "shadow_extra_max" in settings:
                limit = settings["shadow_extra_max"]
                extra = candidate.extra_ratio
                state = "failed" if extra is not None and extra > limit else "passed"
                checks.append(Check("shadow_extra", state, limit, extra))
    if "crash_rate_max" in settings:
        limit = settings["crash_rate_max"]
        cand, ctrl = candidate.crashes_per_hour or 0.0, control.crashes_per_hour or 0.0
        state = "failed" if cand - ctrl > limit else "passed"
        checks.append(Check("crashes_per_hour", state, limit, cand, ctrl, cand - ctrl))

    states = {c.state for c in checks}
    verdict: GateState = "failed" if "failed" in states else ("waiting" if "waiting" in states else "passed")
    return verdict, checks
