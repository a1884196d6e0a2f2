"""`manage.py demo`: the whole system on embedded defaults in one process; Ctrl-C stops it cleanly."""

import io
import os
import signal
import socketserver
import sys
import threading
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer, get_internal_wsgi_application
from django.urls import reverse

from accounts.services import admin_ensure
from demo.components import SimulatedFleet, components
from demo.console import StatusLine, quiet_logging, status_read
from demo.setup import DARK_AFTER_S, FOOTAGE_CREDIT

STATUS_EVERY_S = 5.0


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _interrupt(signum, frame):
    """SIGINT and SIGTERM stop the demo the way Ctrl-C does. SIGINT is set explicitly: a shell
    starts background jobs with it ignored, and Python then keeps ignoring it."""
    raise KeyboardInterrupt


def _admin_password() -> str:
    """The admin's password, kept beside the demo's data so every start can show it; a demo
    convenience (var/ holds the CA and OTA keys too), not something a deployment does."""
    path = Path(settings.DATA_DIR) / "admin-password"
    user, password = admin_ensure()
    if password:
        path.write_text(password + "\n")
        path.chmod(0o600)
        return password
    if path.is_file():
        return path.read_text().strip()
    return f"as printed when it was created (`manage.py changepassword {user.username}` sets one)"


def _enroll_rate_for(devices: int) -> None:
    """Let the demo's own cameras enroll at once. They all come from 127.0.0.1, which the per-address
    enrollment throttle (THROTTLE_ENROLL, 30/min by default) would take for one client in a loop.
    DRF reads its rates once at import, so the running throttle class is told, not the settings."""
    from rest_framework.throttling import SimpleRateThrottle

    rates = SimpleRateThrottle.THROTTLE_RATES
    allowed, per_s = SimpleRateThrottle.parse_rate(None, rates.get("enroll"))
    if allowed is not None and allowed * 60 / per_s < 2 * devices:
        SimpleRateThrottle.THROTTLE_RATES = {**rates, "enroll": f"{2 * devices}/min"}


def _embedded_protocol() -> None:
    """MQTT 3.1.1 for this process's server connections (ingest, publisher) when the broker is the
    embedded one and MQTT_PROTOCOL is not set: amqtt speaks nothing else and answers an MQTT 5
    CONNECT only after 10 s, which "auto" (5 first) would spend on every start."""
    if settings.MQTT_BROKER == "embedded" and "MQTT_PROTOCOL" not in os.environ:
        settings.MQTT_PROTOCOL = "3.1.1"


class Command(BaseCommand):
    help = "Run Fleet on embedded defaults: web UI and API, broker, ingest, worker and simulated cameras."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--devices",
            type=int,
            default=48,
            help="Cameras to register across the 3 sites on the first run (later runs run those); 0: none.",
        )
        parser.add_argument("--verbose", action="store_true", help="Every log line, not just warnings.")

    def handle(self, *args, host: str, port: int, devices: int, verbose: bool, **options):
        if devices < 0:
            raise CommandError("--devices must be 0 or more")
        quiet_logging(verbose=verbose)
        notes = self.stdout if verbose else io.StringIO()  # setup chatter only with --verbose
        settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        password = _admin_password()

        try:  # bind first: a busy port is a one-line error before anything else starts
            httpd = _ThreadingWSGIServer((host, port), WSGIRequestHandler)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host}:{port}: {exc.strerror}; stop the other process or use --port"
            ) from exc
        httpd.set_app(get_internal_wsgi_application())
        _enroll_rate_for(devices)
        _embedded_protocol()
        web = threading.Thread(target=httpd.serve_forever, name="fleet-web", daemon=True)
        stop = threading.Event()
        running = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _interrupt)
        base = f"http://{host}:{port}"
        line = StatusLine(self.stdout)
        try:
            web.start()
            fleet = None
            for component in components(stop=stop, devices=devices, server_url=base, stdout=notes):
                try:
                    component.start()
                except Exception as exc:  # e.g. the broker's port (MQTT_DEVICE_PORT) is taken
                    raise CommandError(f"{type(component).__name__} could not start: {exc}") from exc
                running.append(component)
                if isinstance(component, SimulatedFleet):
                    fleet = component
            if fleet is not None:
                fleet.ready.wait(180)
            self.stdout.write(self._banner(base, password, fleet))
            since = None
            while True:
                status, since = status_read(since=since)
                line.show(status.line())
                stop.wait(STATUS_EVERY_S)
        except KeyboardInterrupt:
            pass
        finally:
            line.end()
            stop.set()
            if web.is_alive():
                httpd.shutdown()
            httpd.server_close()
            for component in reversed(running):
                component.stop()
            self.stdout.write("stopped")

    def _banner(self, base: str, password: str, fleet: SimulatedFleet | None) -> str:
        rel = os.path.relpath(sys.executable)
        python = sys.executable if rel.startswith("..") else rel
        manage = f"{python} {os.path.relpath(Path(settings.BASE_DIR) / 'manage.py')}"
        lines = [
            self.style.SUCCESS(f"Fleet is up: {base}/"),
            f"  sign in: user admin, password {password}",
            f"  API: {base}/api/docs/; a token for scripts: `{manage} token_create admin --name my-script`"
            " or POST /api/v1/auth/token/ (docs/automation.md)",
        ]
        plan = fleet.plan if fleet is not None else None
        if plan is not None and plan.cameras:
            up = fleet.sim.stats()["connected"] if fleet.sim is not None else 0
            lines.append(
                f"  cameras: {len(plan.cameras)} at {plan.sites} sites ({up} connected), each running"
                f" NanoDet-g on real footage; {FOOTAGE_CREDIT}"
            )
            canary = plan.cameras[plan.canary]
            if plan.dark is not None:
                lines.append(
                    f"  {plan.cameras[plan.dark].name!r} loses its link {DARK_AFTER_S:.0f} s in and stays"
                    " offline, as a dead camera does"
                )
            deployment = fleet.deployment
            if deployment is not None:
                state = "a draft: press Start" if deployment.state == "draft" else deployment.state
                lines.append(
                    f"  to deploy: {base}{reverse('ota:deployment', args=[deployment.pk])}"
                    f" ({deployment.name}, {state}); its canary {canary.name!r}"
                    " fails its health check, so the rollout pauses and the camera rolls back"
                )
            else:
                lines.append(
                    f"  deployments: {base}{reverse('ota:deployments')} (canary {canary.name!r} fails its health check)"
                )
        lines.append("  Ctrl-C stops everything; --verbose shows every log line.")
        return "\n".join(lines)
