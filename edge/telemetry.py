"""Device health sampling and batching into up/telemetry bodies.

A sample has the shape of protocol.up.TelemetrySample. Samples are batched: one
message every `interval_s` seconds or `max_samples` samples, whichever comes first,
because on a metered link the MQTT/TLS overhead of one message per sample costs more
than the sample itself.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psutil

# Interface name prefixes (Linux naming) to the protocol's link vocabulary.
_LINK_PREFIXES: tuple[tuple[str, str], ...] = (
    ("wwan", "cellular"),
    ("wwp", "cellular"),
    ("rmnet", "cellular"),
    ("ppp", "cellular"),
    ("usb", "cellular"),  # USB LTE sticks in RNDIS/ECM mode
    ("wl", "wifi"),
    ("ath", "wifi"),
    ("ra", "wifi"),
    ("eth", "ethernet"),
    ("en", "ethernet"),
)


def read_temperature(*, thermal_root: Path = Path("/sys/class/thermal")) -> float | None:
    """Hottest plausible sensor in °C, or None where the platform exposes none (VMs, containers)."""
    readings: list[float] = []
    sensors = getattr(psutil, "sensors_temperatures", None)
    if sensors is not None:
        with contextlib.suppress(Exception):  # broken drivers raise anything from here
            readings = [t.current for entries in sensors().values() for t in entries]
    if not readings:
        for zone in sorted(thermal_root.glob("thermal_zone*/temp")):
            with contextlib.suppress(OSError, ValueError):
                readings.append(int(zone.read_text().strip()) / 1000)
    plausible = [r for r in readings if -40 <= r <= 150]
    return round(max(plausible), 1) if plausible else None


def default_route_interface(*, route_file: Path = Path("/proc/net/route")) -> str | None:
    try:
        lines = route_file.read_text().splitlines()[1:]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) > 6 and fields[1] == "00000000":  # destination 0.0.0.0: a default route
            metric = int(fields[6])
            if best is None or metric < best[0]:
                best = (metric, fields[0])
    return best[1] if best else None


def guess_link(*, route_file: Path = Path("/proc/net/route"), net_root: Path = Path("/sys/class/net")) -> str:
    """ethernet / wifi / cellular / unknown, from the interface carrying the default route."""
    iface = default_route_interface(route_file=route_file)
    if iface is None:
        return "unknown"
    if (net_root / iface / "wireless").exists() or (net_root / iface / "phy80211").exists():
        return "wifi"
    for prefix, link in _LINK_PREFIXES:
        if iface.startswith(prefix):
            return link
    return "unknown"


def sample_system(*, disk_path: str | Path = "/") -> dict[str, Any]:
    """CPU %, memory %, temperature, free disk (MiB) and link type, right now."""
    return {
        "cpu_pct": min(100.0, max(0.0, float(psutil.cpu_percent(interval=None)))),
        "mem_pct": float(psutil.virtual_memory().percent),
        "temp_c": read_temperature(),
        "disk_free_mb": round(shutil.disk_usage(disk_path).free / 2**20),
        "link": guess_link(),
    }


class QueueStats(Protocol):
    def depth_by_class(self) -> dict[str, int]: ...
    def sent_bytes_by_class(self) -> dict[str, int]: ...


class TelemetryBatcher:
    """Collects samples and hands back one up/telemetry body ({"samples": [...], "quality": [...]}) when due.

    The agent calls `observe()` from the pipeline as frames go by and `tick()` on its
    sampling period; `tick()` returns a body to publish, or None. A sample leaves out what
    says nothing (the protocol's defaults): readings the platform does not have, and
    classes with nothing queued or nothing sent.
    """

    def __init__(
        self,
        *,
        queue: QueueStats | None = None,
        disk_path: str | Path = "/",
        interval_s: float = 60.0,
        max_samples: int = 30,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        system: Callable[[], dict[str, Any]] | None = None,
        quality: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        if interval_s <= 0 or max_samples < 1:
            raise ValueError("interval_s must be positive and max_samples at least 1")
        self.queue = queue
        self.interval_s = interval_s
        self.max_samples = max_samples
        self._clock = clock
        self._wall = wall
        self._system = system or (lambda: sample_system(disk_path=disk_path))
        self._quality = quality  # per model version, over the window of one body (edge.quality)
        self._samples: list[dict[str, Any]] = []
        self._since = clock()
        self._fps: list[float] = []
        self._inference_ms: list[float] = []
        self._sent_base = dict(queue.sent_bytes_by_class()) if queue is not None else {}
        psutil.cpu_percent(interval=None)  # the first call only sets psutil's baseline

    def observe(self, *, fps: float | None = None, inference_ms: float | None = None) -> None:
        """Pipeline figures; each sample carries their mean since the previous sample."""
        if fps is not None:
            self._fps.append(float(fps))
        if inference_ms is not None:
            self._inference_ms.append(float(inference_ms))

    def sample(self) -> dict[str, Any]:
        """Take one sample now and keep it for the next body."""
        s: dict[str, Any] = {"ts": round(self._wall(), 1), **self._system()}
        s["fps"] = round(sum(self._fps) / len(self._fps), 2) if self._fps else None
        s["inference_ms"] = (
            round(sum(self._inference_ms) / len(self._inference_ms), 2) if self._inference_ms else None
        )
        self._fps.clear()
        self._inference_ms.clear()
        if self.queue is not None:
            s["queue_depth"] = {cls: n for cls, n in self.queue.depth_by_class().items() if n > 0}
            sent = self.queue.sent_bytes_by_class()
            # The counters are cumulative in the queue DB; the wire carries bytes since the last sample.
            delta = {cls: n - self._sent_base.get(cls, 0) for cls, n in sent.items()}
            s["bytes_sent"] = {cls: n for cls, n in delta.items() if n > 0}
            self._sent_base = dict(sent)
        self._samples.append(s)
        return s

    def due(self) -> bool:
        return bool(self._samples) and (
            len(self._samples) >= self.max_samples or self._clock() - self._since >= self.interval_s
        )

    def flush(self) -> dict[str, Any] | None:
        """The pending samples as a body, or None if there are none."""
        self._since = self._clock()
        if not self._samples:
            return None
        body: dict[str, Any] = {"samples": self._samples}
        if self._quality is not None:
            body["quality"] = self._quality()
        self._samples = []
        return body

    def tick(self) -> dict[str, Any] | None:
        self.sample()
        return self.flush() if self.due() else None
