"""`python -m edge simulate`: N virtual devices in one process, speaking the real protocol.

Each device enrolls for real (its own key and CSR through the enrollment endpoint, or any
`enroll(csr_pem, serial) -> EnrollAnswer` callable), connects with mTLS through the real
broker, publishes status, telemetry and events from a cheap synthetic source (simulated
detections, no video), answers down/cmd and down/ota (manifest verified with the protocol
verifier; download, install and health check simulated). Failure injection picks devices:
`fail_health` of them fail every health check, `drop_offline` lose their link now and then
and come back later, `bad_payloads` send malformed messages.

All devices share one asyncio loop on one thread (edge.sim.netloop); Python API:

    sim = Simulator(devices=100, server_url=URL, token=T, state_dir=D, settings=SimSettings(...))
    sim.start()                 # enroll, connect; returns once all are online (or the timeout)
    sim.devices[0].stats        # per-device handles
    sim.call(sim.devices[0].go_offline, 10)
    sim.stop()
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from edge.agent.errors import AgentError
from edge.agent.identity import Identity, IdentityStore, make_csr
from edge.enroll import EnrollAnswer, post_enrollment
from edge.sim.device import VirtualDevice
from edge.sim.netloop import NetLoop
from edge.sim.settings import SimSettings
from protocol.signing import public_key_from_b64

if TYPE_CHECKING:
    from edge.sim.vision import SharedVision  # OpenCV and ONNX Runtime: only for devices that watch clips

log = logging.getLogger(__name__)

Enroll = Callable[[str, str], EnrollAnswer]


def http_enroller(server_url: str, token: str, *, hardware_model: str, verify: bool | str = True) -> Enroll:
    """POST /api/v1/enroll/ with one keep-alive session per enrolling thread."""
    local = threading.local()

    def enroll(csr_pem: str, serial: str) -> EnrollAnswer:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return post_enrollment(
            server_url=server_url,
            token=token,
            csr_pem=csr_pem,
            serial=serial,
            hardware_model=hardware_model,
            session=local.session,
            verify=verify,
        )

    return enroll


def enroll_device(state_dir: Path, serial: str, enroll: Enroll) -> Identity:
    """An identity in `state_dir`, enrolling only if there is none yet (a rerun reuses them)."""
    store = IdentityStore(state_dir)
    if store.exists():
        return store.load()
    store.key_file(1).unlink(missing_ok=True)
    key = store.new_key(1)
    answer = enroll(make_csr(key, serial), serial)
    return store.save(
        device_id=answer.device_id,
        generation=1,
        certificate_pem=answer.certificate_pem,
        ca_pem=answer.ca_pem,
        mqtt=answer.mqtt,
        api_url=answer.api_url,
    )


class Simulator:
    def __init__(
        self,
        *,
        devices: int,
        state_dir: str | Path,
        enroll: Enroll | None = None,
        server_url: str | None = None,
        token: str | None = None,
        settings: SimSettings | None = None,
        fail_health: float = 0.0,
        drop_offline: float = 0.0,
        bad_payloads: float = 0.0,
        seed: int = 0,
        enroll_threads: int = 4,
        connect_threads: int = 4,
        serials: Sequence[str] | None = None,
        failing: Collection[int] = (),
        vision: SharedVision | None = None,
        clips: Sequence[Path | None] | None = None,
    ) -> None:
        """`serials`: one per device (default SIM-{seed}-{i}), e.g. cameras an operator registered
        beforehand; `failing`: indices of devices that fail every health check, beside the
        `fail_health` share; `vision` and `clips` (one per device, None: simulated detections):
        devices whose events come from the real detection pipeline on real footage."""
        if enroll is None:
            if not (server_url and token):
                raise AgentError("bad_config", "give enroll=... or server_url and token")
            enroll = http_enroller(
                server_url, token, hardware_model=(settings or SimSettings()).hardware_model
            )
        if serials is not None and len(serials) != devices:
            raise AgentError("bad_config", f"{len(serials)} serials for {devices} devices")
        if clips is not None and len(clips) != devices:
            raise AgentError("bad_config", f"{len(clips)} clips for {devices} devices")
        if clips is not None and any(clips) and vision is None:
            raise AgentError("bad_config", "clips need a SharedVision to run them")
        self.count = devices
        self.serials = (
            list(serials) if serials is not None else [f"SIM-{seed}-{i:05d}" for i in range(devices)]
        )
        self.failing = set(failing)
        self.vision = vision
        self.clips = list(clips) if clips is not None else [None] * devices
        self.state_dir = Path(state_dir)
        self.enroll = enroll
        self.settings = settings or SimSettings()
        self.shares = (fail_health, drop_offline, bad_payloads)
        self.seed = seed
        self.enroll_threads = enroll_threads
        self.connect_threads = connect_threads
        self.devices: list[VirtualDevice] = []
        self.stopping = False
        self.loop = asyncio.new_event_loop()
        self.net = NetLoop(self.loop, connect_threads=connect_threads)
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task] = []
        self.enroll_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------

    def _identities(self) -> list[Identity]:
        started = time.monotonic()
        with ThreadPoolExecutor(self.enroll_threads, thread_name_prefix="sim-enroll") as pool:
            futures = [
                pool.submit(enroll_device, self.state_dir / self._state_name(i), serial, self.enroll)
                for i, serial in enumerate(self.serials)
            ]
            identities = [f.result() for f in futures]
        self.enroll_seconds = time.monotonic() - started
        return identities

    def _state_name(self, index: int) -> str:
        # Default serials keep the dev-NNNNN directories earlier runs made; given serials name theirs.
        return (
            f"dev-{index:05d}" if self.serials[index].startswith(f"SIM-{self.seed}-") else self.serials[index]
        )

    def start(self, *, timeout: float = 120.0) -> bool:
        """Enroll and connect every device; True once all are online within `timeout`."""
        identities = self._identities()
        rng = random.Random(self.seed)
        fail_health, drop_offline, bad = self.shares
        # Exact shares (rounded), not coin flips: a 10 % health-failure run fails 10 % of devices.
        picks = {name: set(rng.sample(range(self.count), round(share * self.count)))
                 for name, share in (("health", fail_health), ("drop", drop_offline), ("bad", bad))}  # fmt: skip
        self.devices = [
            VirtualDevice(
                self,
                i,
                ident,
                fails_health=i in picks["health"] or i in self.failing,
                flaky=i in picks["drop"],
                bad_payloads=i in picks["bad"],
                seed=rng.getrandbits(32),
                clip=self.clips[i],
            )
            for i, ident in enumerate(identities)
        ]
        self._thread = threading.Thread(target=self._run_loop, name="sim-loop", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(d.stats.connects > 0 for d in self.devices):
                return True
            time.sleep(0.1)
        return False

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.net.start()
        self._tasks = [self.loop.create_task(d.run()) for d in self.devices]
        self.loop.run_forever()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) on the simulator's loop and return its result (thread-safe)."""

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return

        async def shutdown() -> None:
            self.stopping = True
            for d in self.devices:
                d.disconnect()
            await asyncio.sleep(0.5)  # let the offline statuses and DISCONNECTs go out
            for t in self._tasks:
                t.cancel()
            self.net.close()

        if self.vision is not None:
            self.vision.close()  # queued episodes are dropped; a running one finishes
        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
            self._thread = None

    # -- figures -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        ota = Counter(state for d in self.devices for _, state, _ in d.stats.ota)
        return {
            "devices": len(self.devices),
            "connected": sum(d.connected for d in self.devices),
            "published": sum(d.stats.published for d in self.devices),
            "connects": sum(d.stats.connects for d in self.devices),
            "disconnects": sum(d.stats.disconnects for d in self.devices),
            "bad_sent": sum(d.stats.bad_sent for d in self.devices),
            "events": sum(d.stats.events for d in self.devices),
            "ota_reports": dict(ota),
        }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, required=True)
    p.add_argument("--server", help="server base URL (enrollment endpoint)")
    p.add_argument("--token", help="enrollment token (limited-use: at least --devices uses)")
    p.add_argument("--state-dir", type=Path, default=Path("var/sim"))
    p.add_argument("--fail-health", type=float, default=0.0)
    p.add_argument("--drop-offline", type=float, default=0.0)
    p.add_argument("--bad-payloads", type=float, default=0.0)
    p.add_argument("--ota-root-key", help="base64 Ed25519 root public key the devices pin")
    p.add_argument("--hardware-model", default="sim-cam")
    p.add_argument("--mqtt-protocol", choices=("3.1.1", "5"), default="3.1.1")
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--telemetry-s", type=float, default=60.0)
    p.add_argument("--events-per-min", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    settings = SimSettings(
        hardware_model=args.hardware_model,
        root_public_key=public_key_from_b64(args.ota_root_key) if args.ota_root_key else None,
        mqtt_protocol=args.mqtt_protocol,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        telemetry_s=args.telemetry_s,
        events_per_min=args.events_per_min,
    )
    sim = Simulator(
        devices=args.devices,
        state_dir=args.state_dir,
        server_url=args.server,
        token=args.token,
        settings=replace(settings),
        fail_health=args.fail_health,
        drop_offline=args.drop_offline,
        bad_payloads=args.bad_payloads,
        seed=args.seed,
    )
    cpu0 = time.process_time()
    t0 = time.monotonic()
    all_up = sim.start()
    print(f"{sum(d.stats.connects > 0 for d in sim.devices)}/{args.devices} online "
          f"(enrolled in {sim.enroll_seconds:.1f} s, all up: {all_up}, {time.monotonic() - t0:.1f} s)", flush=True)  # fmt: skip
    try:
        end = time.monotonic() + args.duration if args.duration else float("inf")
        while time.monotonic() < end:
            time.sleep(min(10.0, max(0.1, end - time.monotonic())))
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            cpu = (time.process_time() - cpu0) / (time.monotonic() - t0) * 100
            print(f"{sim.stats()} cpu={cpu:.0f}% maxrss={rss:.0f}MiB", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0
