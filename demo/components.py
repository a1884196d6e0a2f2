"""The pieces `manage.py demo` runs beside the web server, each with start() and stop()."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TextIO

import requests
from celery import current_app
from django.conf import settings
from django.db import close_old_connections

from fleet import broker_runtime
from fleet.logging import get_logger

log = get_logger(__name__)


class Component(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def _is_revoked(serial: int) -> bool:
    # Runs in the broker's executor threads: each thread has its own DB connection, which
    # must not outlive CONN_MAX_AGE or survive a database restart.
    from devices.identity_selectors import certificate_is_revoked

    close_old_connections()
    try:
        return certificate_is_revoked(serial=serial)
    finally:
        close_old_connections()


class EmbeddedBrokerComponent:
    """The embedded broker for `manage.py demo`: start() / stop(), listening on MQTT_DEVICE_PORT.

    Devices and the server share its one listener; a CONNECT is refused when the
    certificate's serial is revoked in DeviceCertificate.
    """

    def __init__(
        self, *, host: str | None = None, port: int | None = None, stdout: TextIO | None = None
    ) -> None:
        self.stdout = stdout
        self.host = host or settings.MQTT_DEVICE_BIND
        self.port = settings.MQTT_DEVICE_PORT if port is None else port
        self.broker = None

    def start(self) -> None:
        from fleet.broker.embedded import EmbeddedBroker

        files = broker_runtime.pki_files()
        if not all(p.exists() for p in files.all()):
            # The embedded default sets itself up: `pki init` only creates what is missing.
            from django.core.management import call_command

            call_command("pki", "init", stdout=self.stdout)
        broker = EmbeddedBroker(
            self.host,
            self.port,
            # One listener for both: devices (device CA) and the server's identities (server CA).
            files.ca_cert.read_bytes() + files.server_ca_cert.read_bytes(),
            files.broker_cert.read_bytes(),
            files.broker_key.read_bytes(),
            _is_revoked,
            max_queued_bytes=settings.MQTT_BROKER_MAX_QUEUED_BYTES,
        )
        broker.start()
        self.broker, self.port = broker, broker.port
        broker_runtime.set_embedded(broker)
        log.info("embedded MQTT broker listening", host=self.host, port=self.port)

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            if broker_runtime.embedded() is self.broker:
                broker_runtime.set_embedded(None)
            self.broker = None


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

        run_ingest(self.stop_event, runner=self.runner)

    def start(self) -> "IngestComponent":
        from telemetry.ingest.runner import IngestOptions, IngestRunner

        options = IngestOptions.from_settings(**self.overrides)
        self.runner = IngestRunner(options=options, stop_event=self.stop_event)
        self.thread.start()
        return self

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the ingest's subscription is in place: from then on the registry hears every camera."""
        return self.runner is not None and self.runner.subscribed.wait(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)


class SimulatedFleet:
    """The demo's cameras: `python -m edge simulate` in this process, each camera one registered in
    the demo sites, enrolling through this server's own endpoint (once it answers) with its own key,
    then speaking the real protocol through the broker. Their detections come from the agent's
    pipeline (NanoDet-g on one shared ONNX Runtime session) on real footage (edge.sim.vision)."""

    def __init__(
        self, *, devices: int, server_url: str, stop: threading.Event, stdout, state_dir: Path
    ) -> None:
        self.devices, self.server_url, self._stop, self.stdout = devices, server_url, stop, stdout
        self.state_dir = state_dir
        self.plan = None
        self.sim = None
        self.vision = None
        self.deployment = None
        self.ready = threading.Event()  # set once the cameras are up (or could not start)
        self.thread = threading.Thread(target=self._run, name="fleet-simulator", daemon=True)

    def start(self) -> None:
        from demo.setup import demo_fleet_prepare

        self.plan = demo_fleet_prepare(devices=self.devices, stdout=self.stdout)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._start_cameras()
        except Exception:  # a demo without cameras still serves the UI and API
            log.exception("simulated cameras did not start")
        finally:
            close_old_connections()
            self.ready.set()

    def _start_cameras(self) -> None:
        from demo.setup import DARK_AFTER_S, SIM_HARDWARE, demo_deployment_prepare
        from edge.sim.settings import SimSettings
        from edge.sim.vision import SharedVision
        from edge.simulate import Simulator
        from edge.vision.models import default_model_path

        plan = self.plan
        if not plan.cameras or not _wait_for_http(f"{self.server_url}/healthz", stop=self._stop):
            return
        self.vision = SharedVision(model_path=default_model_path("fp32"))
        sim = Simulator(
            devices=len(plan.cameras),
            state_dir=self.state_dir,
            server_url=self.server_url,
            token=plan.token,
            settings=SimSettings(
                hardware_model=SIM_HARDWARE[0],
                root_public_key=plan.root_key,
                telemetry_s=30,
                # This run's broker, not the endpoint saved at enrollment: a rerun may use another port.
                mqtt_port=broker.port if (broker := broker_runtime.embedded()) is not None else None,
            ),
            serials=[c.serial for c in plan.cameras],
            clips=[c.clip for c in plan.cameras],
            vision=self.vision,
            failing={plan.canary},
            drop_offline=0.04,
            bad_payloads=0.04,
        )
        self.sim = sim
        # Enrolled by now; the banner waits for the connections at most this long (the cameras keep
        # trying on their own).
        sim.start(timeout=30)
        if plan.dark is not None:
            # Its link dies without a DISCONNECT (the broker publishes its will) and it never returns.
            dark = sim.devices[plan.dark]
            sim.loop.call_soon_threadsafe(sim.loop.call_later, DARK_AFTER_S, dark.go_offline, 1e9)
        if not self._stop.is_set():
            self.deployment = demo_deployment_prepare(canary_serial=plan.cameras[plan.canary].serial)

    def stop(self) -> None:
        self.thread.join(timeout=5)
        if self.sim is not None:
            self.sim.stop()
        elif self.vision is not None:
            self.vision.close()


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


def components(
    *, stop: threading.Event, devices: int, server_url: str, stdout: TextIO
) -> Iterator[Component]:
    """Embedded broker, ingest, worker and simulated fleet, in start order."""
    if settings.MQTT_BROKER == "embedded":
        yield EmbeddedBrokerComponent(stdout=stdout)
    # One process: the demo's SQLite has one writer anyway, and nothing is left behind on Ctrl-C.
    ingest = IngestComponent(commit_process=False)
    yield ingest
    ingest.wait_subscribed(20)  # before the cameras, so their births are counted as they arrive
    yield InlineBeat(settings.CELERY_BEAT_SCHEDULE, stop=stop)
    yield SimulatedFleet(
        devices=devices,
        server_url=server_url,
        stop=stop,
        stdout=stdout,
        state_dir=Path(settings.DATA_DIR) / "sim",
    )
