# ruff: noqa: F811 - identity_pki is a fixture imported for use by name
"""The browser tests' stage: Debian's Chromium driven by Playwright against a live server, with the
demo's own parts around it: the embedded broker (it checks revocations in the database), the ingest
thread, the inline beat (rollout ticks) and simulated cameras speaking the real protocol.

One browser per session; each test gets a fresh context (cookies) and a page that records console
errors, failed requests and CSP violations, and fails the test if there are any.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.devices.test_identity_fixtures import identity_pki  # noqa: F401 - a fixture, requested by name

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = os.environ.get("FLEET_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
WIDTHS = {"wide": 1280, "narrow": 768}


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the browser tests' module. Not session-wide: Playwright's sync API keeps an
    event loop running in the main thread (and its child watcher) until it stops, which breaks later
    tests that call asyncio.run() or wait for their own subprocesses."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # themselves (factories, assertions) are synchronous and safe here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    args = ["--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@dataclass
class Console:
    """What the page complained about: console errors, uncaught exceptions, failed requests."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on(
            "console", lambda m: m.type == "error" and self.errors.append(f"console ({page.url}): {m.text}")
        )
        page.on("pageerror", lambda e: self.errors.append(f"pageerror ({page.url}): {e}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status} {r.request.method} {r.url}"),
        )


class UI:
    """A signed-in browser page plus helpers: go to a path, take screenshots at both widths."""

    def __init__(self, page, base_url: str, console: Console, test_name: str) -> None:
        self.page, self.base_url, self.console, self.test_name = page, base_url, console, test_name

    def go(self, path: str):
        self.page.goto(self.base_url + path)
        return self.page

    def sign_in(self, username: str, password: str = PASSWORD) -> None:
        self.go("/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r".*/$"))

    def unlabelled(self) -> list[str]:
        """Visible form controls a screen reader or a keyboard user could not name (no label, no aria-label)."""
        return self.page.evaluate(
            """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
               .filter(e => e.offsetParent !== null && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
               .map(e => e.name || e.id || e.outerHTML.slice(0, 80))"""
        )

    def shot(self, name: str) -> None:
        """Screenshots at 1280 and 768 px; also checks the page does not scroll sideways."""
        for label, width in WIDTHS.items():
            self.page.set_viewport_size({"width": width, "height": 900})
            self.page.wait_for_timeout(150)
            overflow = self.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"{name} scrolls sideways by {overflow} px at {width} px"
            self.page.screenshot(
                path=str(SCREENSHOTS / f"{self.test_name}-{name}-{label}.png"), full_page=True
            )
        self.page.set_viewport_size({"width": WIDTHS["wide"], "height": 900})


@pytest.fixture
def ui(browser, live_server, request) -> Iterator[UI]:
    context = browser.new_context(viewport={"width": WIDTHS["wide"], "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    console = Console()
    console.attach(page)
    helper = UI(page, live_server.url, console, request.node.name.removeprefix("test_")[:40])
    try:
        yield helper
    finally:
        context.close()
    assert not console.errors, "\n".join(console.errors)


# -- the rest of the system ----------------------------------------------------------------------


@dataclass
class Stack:
    url: str
    broker_port: int
    root_public_key: object
    tmp: Path
    sims: list = field(default_factory=list)

    def simulate(
        self, *, devices: int, token: str, fail_health: float = 0.0, seed: int = 0, name: str = "sim", **knobs
    ):
        """Simulated cameras (edge.simulate) that enroll with `token` over the live server's HTTPS endpoint."""
        from edge.sim.settings import SimSettings
        from edge.simulate import Simulator, http_enroller

        settings = SimSettings(hardware_model="sim-cam", root_public_key=self.root_public_key, telemetry_s=1.0,
                               events_per_min=30, ota_step_s=0.25, **knobs)  # fmt: skip
        sim = Simulator(
            devices=devices,
            state_dir=self.tmp / name,
            enroll=http_enroller(self.url, token, hardware_model="sim-cam"),
            settings=settings,
            fail_health=fail_health,
            seed=seed,
            enroll_threads=1,
        )
        self.sims.append(sim)
        assert sim.start(timeout=60), sim.stats()
        return sim


@pytest.fixture
def stack(live_server, identity_pki, settings, tmp_path, throttle_rates) -> Iterator[Stack]:
    """The demo's components around the live server, on the test database: broker, ingest, beat."""
    from demo.components import EmbeddedBrokerComponent, InlineBeat
    from devices.services import hardware_model_create
    from fleet import broker_runtime, mqtt
    from fleet.audit import Actor
    from ota.services.keys import keys_init, root_public_key
    from tests.telemetry.helpers import IngestThread

    throttle_rates(enroll="100000/min")
    settings.MQTT_BROKER = "embedded"
    settings.STORAGE_BACKEND, settings.MEDIA_ROOT = "local", tmp_path / "media"
    settings.PUBLIC_URL = live_server.url
    broker = EmbeddedBrokerComponent(host="127.0.0.1", port=0)
    broker.start()  # creates the ingest and admin identities in PKI_DIR if missing (pki init)
    files = broker_runtime.pki_files()
    settings.MQTT_HOST = settings.MQTT_DEVICE_HOST = "127.0.0.1"
    settings.MQTT_PORT = settings.MQTT_DEVICE_PORT = broker.port
    settings.MQTT_TLS, settings.MQTT_CA_FILE = True, str(files.ca_cert)
    settings.MQTT_CLIENT_CERT, settings.MQTT_CLIENT_KEY = str(files.ingest_cert), str(files.ingest_key)
    settings.INGEST_BATCH_MS, settings.INGEST_SEEN_RESOLUTION_S = 20, 1
    hardware_model_create(
        actor=Actor.system("test"), data={"name": "sim-cam", "cpu_arch": "x86_64", "ram_mb": 1024}
    )
    keys_init(actor=Actor.system("test"), root_out=str(tmp_path / "ota-root.key"))
    ingest = IngestThread(client_id=f"fleet-ingest-ui-{uuid.uuid4().hex[:6]}", commit_process=False).start()
    stop = threading.Event()
    beat = InlineBeat(
        {
            "ota": {"task": "ota.tasks.rollout_tick", "schedule": 1.0},
            "rollups": {"task": "telemetry.tasks.metrics_rollup_minutes", "schedule": 5.0},
        },
        stop=stop,
    )
    beat.start()
    stage = Stack(
        url=live_server.url, broker_port=broker.port, root_public_key=root_public_key(), tmp=tmp_path
    )
    try:
        yield stage
    finally:
        for sim in stage.sims:
            sim.stop()
        beat.stop()
        ingest.stop()
        mqtt.close_publisher()
        broker.stop()
