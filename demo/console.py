"""The demo's console: quiet logs, one banner, then one status line that says the system is alive."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.core.management.base import OutputWrapper

# Loggers that narrate their internals at INFO (amqtt and transitions: every session state
# change; celery.app.trace: every task run; django.server: every request). WARNING unless --verbose;
# amqtt at ERROR: its warnings are the ingest's MQTT 5 probe (the broker speaks 3.1.1) and /readyz's
# TLS check closing without a CONNECT, both expected; asyncio at ERROR: "SSL connection is closed"
# as the cameras' TLS connections close on Ctrl-C.
CHATTY_LOGGERS = {
    "amqtt": "ERROR",
    "transitions": "WARNING",
    "celery": "WARNING",
    "celery.app.trace": "WARNING",
    "django.server": "WARNING",
    "paho": "WARNING",
    "asyncio": "ERROR",
}


def quiet_logging(*, verbose: bool) -> None:
    """WARNING for everything (our own warnings and errors still show), everything with --verbose.

    Written into settings.LOGGING, not only onto the loggers: the WSGI app and Celery's Django
    fixup run django.setup() again later, which applies settings.LOGGING afresh."""
    from django.conf import settings
    from django.utils.log import configure_logging

    if verbose:
        return
    config = settings.LOGGING
    config["root"] = {**config.get("root", {}), "level": "WARNING"}
    loggers = config.setdefault("loggers", {})
    for name, level in CHATTY_LOGGERS.items():
        loggers[name] = {**loggers.get(name, {}), "level": level}
    loggers["django.server"]["handlers"] = ["console"]  # Django's own handler prints every request
    configure_logging(settings.LOGGING_CONFIG, config)


@dataclass(frozen=True)
class Status:
    online: int
    cameras: int
    sites: int
    events: int
    thumbnails: int
    messages_per_s: float
    deployment: str  # state of the demo deployment, "" if none

    def line(self) -> str:
        text = (
            f"{self.online}/{self.cameras} cameras online at {self.sites} sites · {self.events} events"
            f" ({self.thumbnails} with thumbnails) · {self.messages_per_s:.1f} messages/s"
        )
        return text + (f" · deployment {self.deployment}" if self.deployment else "")


def ingest_received() -> float:
    """MQTT messages the ingest received so far (its Prometheus counter, this process)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("fleet_ingest_received_total") or 0.0


def status_read(*, since: tuple[float, float] | None) -> tuple[Status, tuple[float, float]]:
    """The figures of the status line; `since` is the (time, messages) of the previous reading."""
    from django.db import close_old_connections

    from demo.setup import DEPLOYMENT_NAME
    from ota.models import Deployment
    from telemetry.models import Event, Media
    from telemetry.status.selectors import fleet_status_summary

    close_old_connections()
    try:
        summary = fleet_status_summary()
        deployment = Deployment.objects.filter(name=DEPLOYMENT_NAME).values_list("state", flat=True).first()
        now, received = time.monotonic(), ingest_received()
        rate = 0.0
        if since is not None and now > since[0]:
            rate = (received - since[1]) / (now - since[0])
        status = Status(
            online=summary["online"],
            cameras=summary["total"],
            sites=sum(1 for site in summary["by_site"] if site["site"] is not None and site["total"]),
            events=Event.objects.count(),
            thumbnails=Media.objects.filter(kind="snapshot", state="verified").count(),
            messages_per_s=rate,
            deployment=deployment or "",
        )
    finally:
        close_old_connections()
    return status, (now, received)


class StatusLine:
    """Rewrites one line in place on a terminal; elsewhere (a pipe, a log file) prints one per period."""

    def __init__(self, out: OutputWrapper) -> None:
        self.out = out
        self.tty = out.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        if self.tty:
            self.out.write("\r" + text.ljust(self._width), ending="")
            self._width = len(text)
        else:
            self.out.write(text)
        self.out.flush()

    def end(self) -> None:
        if self.tty and self._width:
            self.out.write("")
            self._width = 0
