"""Knobs of the simulated devices."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.agent import AGENT_VERSION


@dataclass(frozen=True)
class SimSettings:
    hardware_model: str = "sim-cam"
    agent_version: str = AGENT_VERSION
    root_public_key: Ed25519PublicKey | None = None  # None: OTA offers are answered failed
    mqtt_protocol: str = "3.1.1"
    mqtt_host: str | None = None  # override the endpoint from enrollment
    mqtt_port: int | None = None
    keepalive_s: int = 60
    reconnect_max_s: float = 30.0
    telemetry_s: float = 60.0
    events_per_min: float = 1.0
    labels: tuple[str, ...] = ("person", "vehicle", "person", "animal")
    ota_step_s: float = 1.0  # simulated time per OTA state
    drop_every_s: float = 120.0  # mean time between link drops of a flaky device
    offline_s: tuple[float, float] = (5.0, 30.0)  # how long a dropped device stays away
    bad_every_s: float = 60.0  # mean time between bad payloads of a misbehaving device
    reboot_s: float = 2.0
    # Devices that watch a clip (Simulator(vision=..., clips=...)): the first episode this long
    # after connecting, then one every watch_every_s on average (exponential gaps).
    first_watch_s: tuple[float, float] = (1.0, 30.0)
    watch_every_s: float = 180.0
    thumbnails: bool = True  # a small drawn WebP inline in each end report, as the real agent sends
