"""Agent configuration file (JSON or TOML), e.g.

    state_dir = "/var/lib/fleet-agent"
    server_url = "https://fleet.example.com"
    source = "rtsp://10.0.0.5:554/stream1"      # or a file, usb:0, synthetic:seed=3
    detector = "onnx"                            # the OTA model, else model_path; "builtin": motion only
    model_path = "/opt/fleet/models/nanodet-g.onnx"  # the default model (make model builds it)
    hardware_model = "cam-x1"
    alert_labels = ["person"]
    ota_root_key = "<base64 Ed25519 root public key, pinned at manufacture>"

Everything else has a default. The server's down/config overrides detection settings and
the bandwidth policy at run time; this file only sets where the agent starts from.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge.agent.errors import AgentError


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path
    server_url: str | None = None
    source: str = "synthetic:seed=1,duration=600"
    # "onnx": the model installed by OTA, else model_path (NanoDet-g as `make model` builds it);
    # "builtin": OpenCV motion blobs, labelled "motion" (it cannot tell what moved).
    detector: str = "onnx"
    model_path: Path | None = None  # None: edge.vision.models.default_model_path()
    # ONNX Runtime threads for the detector: 1 is steadier on a 2-core camera that also encodes,
    # queues and uploads (FACTS.md: 47-53 ms with 1 thread, 55-95 ms with 2 on a busy machine).
    detector_threads: int = 1
    camera: str = "cam0"
    hardware_model: str = "generic"
    alert_labels: tuple[str, ...] = ("person",)
    # A file or synthetic source is replayed at its own frame rate and started over at its end.
    realtime: bool = True
    loop_source: bool = True
    detection: dict[str, Any] = field(default_factory=dict)  # initial config["detection"]
    bandwidth: dict[str, Any] = field(default_factory=dict)  # initial config["bandwidth"]
    queue_quota_mb: float = 256.0
    queue_min_free_mb: float = 16.0
    mqtt_protocol: str = "3.1.1"  # "5" for Mosquitto; the embedded broker speaks 3.1.1 only
    mqtt_host: str | None = None  # override the endpoint stored at enrollment
    mqtt_port: int | None = None
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    publish_timeout_s: float = 10.0
    # One health sample a minute (the server's rollups are per minute), sent every two: a
    # tenth of the bytes of a sample every 10 s, and still well inside the server's
    # STATUS_SILENT_AFTER_S (300 s) for a camera that sees no events.
    telemetry_sample_s: float = 60.0
    telemetry_interval_s: float = 120.0
    # Renew when less than this share of the certificate's lifetime is left.
    renew_remaining: float = 0.33
    renew_retry_s: float = 3600.0
    ota_root_key: str | None = None
    ota_grace_s: float = 30.0
    # A new model's health check: each self-test frame within this budget, and (for ONNX models)
    # every alert label detectable, so an update cannot silently end this camera's alerts.
    ota_health_budget_ms: float = 1000.0
    # More origins OTA artifacts may come from, beside those the server named at enrollment
    # (e.g. "file://" to install from local files).
    download_origins: tuple[str, ...] = ()
    log_level: str = "info"
    log_buffer_lines: int = 20000
    # Append one JSON line per message the broker acknowledged (edge.agent.sent_log); unbounded,
    # for audits and end-to-end tests, unset on a camera. Relative to the config file's folder.
    sent_log: Path | None = None

    def __post_init__(self) -> None:
        if self.detector not in ("builtin", "onnx"):
            raise AgentError("bad_config", f"detector must be builtin or onnx, not {self.detector!r}")
        if not 1 <= self.detector_threads <= 64:
            raise AgentError("bad_config", "detector_threads must lie in [1, 64]")
        if self.mqtt_protocol not in ("3.1.1", "5"):
            raise AgentError("bad_config", f"mqtt_protocol must be 3.1.1 or 5, not {self.mqtt_protocol!r}")
        if not 0 < self.ota_health_budget_ms <= 600_000:
            raise AgentError("bad_config", "ota_health_budget_ms must lie in (0, 600000]")
        if not 0 < self.renew_remaining < 1:
            raise AgentError("bad_config", "renew_remaining must lie in (0, 1)")
        if self.reconnect_min_s <= 0 or self.reconnect_max_s < self.reconnect_min_s:
            raise AgentError("bad_config", "0 < reconnect_min_s <= reconnect_max_s")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base_dir: Path | None = None) -> AgentConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AgentError("bad_config", f"unknown keys {unknown}")
        if "state_dir" not in data:
            raise AgentError("bad_config", "state_dir is required")
        values = dict(data)
        state_dir = Path(values["state_dir"]).expanduser()
        if base_dir is not None and not state_dir.is_absolute():
            state_dir = base_dir / state_dir  # relative to the config file, not the cwd
        values["state_dir"] = state_dir
        for name in ("model_path", "sent_log"):
            if values.get(name) is not None:
                path = Path(values[name]).expanduser()
                values[name] = path if base_dir is None or path.is_absolute() else base_dir / path
        for name in ("alert_labels", "download_origins"):
            if name in values:
                values[name] = tuple(values[name])
        try:
            return cls(**values)
        except TypeError as exc:
            raise AgentError("bad_config", str(exc)) from None


def load_config(path: str | Path) -> AgentConfig:
    """Read a .toml or .json agent configuration."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AgentError("bad_config", f"cannot read {path}: {exc}") from None
    try:
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AgentError("bad_config", f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise AgentError("bad_config", f"{path}: top level must be a table/object")
    return AgentConfig.from_dict(data, base_dir=path.parent.resolve())
