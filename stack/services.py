"""The stack's processes, in start order, each with its readiness probe.

    postgres   external: the machine's PostgreSQL; the stack's database is created if missing
    redis      external: cache (throttling, login failures) and, with STACK_CELERY_BROKER=redis, Celery
    rabbitmq   external: Celery's broker (STACK_CELERY_BROKER=rabbitmq, the default)
    s3         SeaweedFS `weed server -s3` (stack/s3.py); the bucket is created if missing
    prepare    one-off: migrate, pki init, broker_config, OTA keys, the first admin (stack/prepare.py)
    mosquitto  /usr/sbin/mosquitto -c <MQTT_BROKER_DIR>/mosquitto.conf (mTLS, persistence)
    web        gunicorn fleet.wsgi (GUNICORN_CMD_ARGS)
    ingest     manage.py ingest (receiver + forked committer)
    worker     celery -A fleet worker
    beat       celery -A fleet beat

Every Fleet process gets the same environment (stack/config.py) and nothing else.
"""

from __future__ import annotations

import re
import signal
import socket
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from stack.config import BASE_DIR, StackConfig, redacted
from stack.s3 import S3Server, Weed
from stack.s3 import probe as s3_probe
from stack.supervisor import Service, Supervisor

MOSQUITTO_BIN = "/usr/sbin/mosquitto"


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own http URL
        return response.status == 200


def _http_text(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own http URL
        return response.read().decode()


# -- external servers -------------------------------------------------------------------------


def postgres_ready(service: Service) -> bool:
    """PostgreSQL answers; the stack's database exists (created here if not)."""
    import psycopg
    from psycopg import sql

    url = service.env["DATABASE_URL"]
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, connect_timeout=3, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            service.note = f"database {name}"
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            service.note = f"database {name} created"
    return True


def redis_ready(service: Service) -> bool:
    parts = urlsplit(service.env["CACHE_URL"])
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3) as s:
        if parts.password:
            s.sendall(f"AUTH {parts.password}\r\n".encode())
            s.recv(64)
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


def amqp_ready(service: Service) -> bool:
    from kombu import Connection

    with Connection(service.env["CELERY_BROKER_URL"], connect_timeout=3) as conn:
        conn.connect()
    return True


# -- the stack's own servers --------------------------------------------------------------------


def celery_ping(config: StackConfig, node: str, timeout: float = 1.0) -> bool:
    """The worker `node` answers a control ping on this stack's broker and control exchange."""
    from celery import Celery

    app = Celery("stack-probe", broker=config.celery_broker_url, set_as_current=False)
    app.conf.control_exchange = config.env.get("CELERY_CONTROL_EXCHANGE") or "celery"
    app.conf.broker_connection_retry_on_startup = False
    try:
        return bool(app.control.ping(destination=[node], timeout=timeout))
    finally:
        app.close()


def worker_node(name: str = "worker1") -> str:
    return f"{name}@{socket.gethostname()}"


def build_services(config: StackConfig, *, python: str | None = None) -> list[Service]:
    python = python or sys.executable
    env = config.env
    logs = config.log_dir
    manage = [python, str(BASE_DIR / "manage.py")]
    broker_dir = Path(env["MQTT_BROKER_DIR"])
    s3 = Weed(
        config.dir / "s3",
        access_key=env["S3_ACCESS_KEY_ID"],
        secret_key=env["S3_SECRET_ACCESS_KEY"],
        s3_port=config.s3_port,
        host=config.host,
    )
    server = S3Server(
        endpoint_url=env["S3_ENDPOINT_URL"],
        access_key=env["S3_ACCESS_KEY_ID"],
        secret_key=env["S3_SECRET_ACCESS_KEY"],
        region=env.get("S3_REGION") or "us-east-1",
    )

    def s3_ready(service: Service) -> bool:
        s3_probe(server)
        server.ensure_bucket(env["S3_BUCKET"])
        return True

    def mosquitto_ready(service: Service) -> bool:
        from fleet.broker.mosquitto import read_listeners, wait_listening

        return wait_listening(
            read_listeners(broker_dir / "mosquitto.conf"),
            ca_file=Path(env["PKI_DIR"]) / "ca.crt",
            proc=service.proc,
            timeout=0.5,
        )

    def ingest_ready(service: Service) -> bool:
        text = _http_text(f"http://127.0.0.1:{config.ingest_metrics_port}/metrics")
        return re.search(r"^fleet_ingest_connected 1\.0$", text, re.M) is not None

    node = worker_node()

    def beat_ready(service: Service) -> bool:
        return "beat: Starting..." in service.log_since_start()

    def web_ready(service: Service) -> bool:
        return _http_ok(f"{config.url}/healthz")

    gunicorn_env = {
        **env,
        "GUNICORN_CMD_ARGS": " ".join(
            [
                f"--bind {config.host}:{config.web_port}",
                f"--workers {config.web_workers}",
                "--access-logfile -",
                "--graceful-timeout 10",
                "--timeout 60",
            ]
        ),
    }

    def external(name: str, ready, url_var: str) -> Service:
        return Service(name, [], env, ready, kind="external", url=redacted(env[url_var]), ready_timeout_s=15)

    external_services = [
        external("postgres", postgres_ready, "DATABASE_URL"),
        external("redis", redis_ready, "CACHE_URL"),
    ]
    if urlsplit(env["CELERY_BROKER_URL"]).scheme.startswith("amqp"):
        external_services.append(external("rabbitmq", amqp_ready, "CELERY_BROKER_URL"))
    grace = config.grace_s
    return [
        *external_services,
        Service(
            "s3",
            s3.argv,
            env,
            s3_ready,
            url=env["S3_ENDPOINT_URL"],
            cwd=str(config.dir / "s3"),
            log_file=logs / "s3.log",
            stop_signal=signal.SIGKILL,  # weed ignores SIGTERM
            before_start=lambda service: (config.dir / "s3").mkdir(parents=True, exist_ok=True),
        ),
        Service(
            "prepare",
            [python, "-m", "stack.prepare"],
            env,
            lambda service: True,
            kind="oneshot",
            cwd=str(BASE_DIR),
            log_file=logs / "prepare.log",
            ready_timeout_s=300,
        ),
        Service(
            "mosquitto",
            [env.get("FLEET_MOSQUITTO_BIN") or MOSQUITTO_BIN, "-c", str(broker_dir / "mosquitto.conf")],
            env,
            mosquitto_ready,
            url=f"mqtts://{env['MQTT_DEVICE_HOST']}:{env['MQTT_DEVICE_PORT']} (devices), "
            f"mqtts://{env['MQTT_HOST']}:{env['MQTT_PORT']} (servers)",
            log_file=logs / "mosquitto.log",
            grace_s=grace,
        ),
        Service(
            "web",
            [python, "-m", "gunicorn", "fleet.wsgi"],
            gunicorn_env,
            web_ready,
            url=config.url,
            cwd=str(BASE_DIR),
            log_file=logs / "web.log",
            grace_s=grace,
        ),
        Service(
            "ingest",
            [*manage, "ingest"],
            env,
            ingest_ready,
            url=f"metrics http://127.0.0.1:{config.ingest_metrics_port}/metrics",
            cwd=str(BASE_DIR),
            log_file=logs / "ingest.log",
            grace_s=grace,
        ),
        Service(
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "fleet",
                "worker",
                "-l",
                "info",
                "-n",
                node,
                "--concurrency",
                str(config.worker_concurrency),
            ],
            env,
            lambda service: celery_ping(config, node),
            url=f"{node} on {redacted(env['CELERY_BROKER_URL'])}",
            cwd=str(BASE_DIR),
            log_file=logs / "worker.log",
            grace_s=grace,
        ),
        Service(
            "beat",
            [
                python,
                "-m",
                "celery",
                "-A",
                "fleet",
                "beat",
                "-l",
                "info",
                "-s",
                str(config.dir / "celerybeat-schedule"),
                "--pidfile=",
            ],
            env,
            beat_ready,
            url="schedule " + str(config.dir / "celerybeat-schedule"),
            cwd=str(BASE_DIR),
            log_file=logs / "beat.log",
            grace_s=grace,
        ),
    ]


class Stack:
    """The whole stack: its configuration, the supervisor of its processes, and the last readiness check."""

    def __init__(self, config: StackConfig, *, out=None, python: str | None = None) -> None:
        self.config = config
        self.services = build_services(config, python=python)
        self.supervisor = Supervisor(self.services, out=out, restart=config.restart)
        self.readyz: dict | None = None

    def start(self, readyz_timeout: float = 60.0) -> None:
        import json
        import time
        import urllib.error

        self.config.dir.mkdir(parents=True, exist_ok=True)
        self.supervisor.start()
        deadline = time.monotonic() + readyz_timeout
        last = ""
        while True:
            try:
                with urllib.request.urlopen(f"{self.config.url}/readyz", timeout=5) as response:  # noqa: S310
                    self.readyz = json.loads(response.read())
                    break
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                self.supervisor.stop()
                raise RuntimeError(f"/readyz not green after {readyz_timeout:.0f} s: {last}")
            time.sleep(0.5)
        checks = ", ".join(
            f"{name} {c['status']}" + (f" ({c['detail']})" if c.get("detail") else "")
            for name, c in self.readyz["checks"].items()
        )
        self.supervisor.say(f"ready     {self.config.url}/readyz: {checks}")

    def stop(self) -> None:
        self.supervisor.stop()

    def service(self, name: str) -> Service:
        return self.supervisor.service(name)
