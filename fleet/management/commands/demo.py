"""`manage.py demo`: the whole system on embedded defaults in one process; Ctrl-C stops it cleanly."""

import signal
import socketserver
import threading

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer, get_internal_wsgi_application

from accounts.services import admin_ensure
from devices.demo import demo_seed
from fleet.demo import components


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _interrupt(signum, frame):
    """SIGTERM stops the demo the way Ctrl-C does."""
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run Fleet on embedded defaults: web UI and API, broker, ingest, worker and a simulated fleet."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--devices", type=int, default=12, help="Simulated cameras to run.")

    def handle(self, *args, host: str, port: int, devices: int, **options):
        settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        user, password = admin_ensure()
        if password:
            self.stdout.write(
                self.style.SUCCESS(f"admin user created: {user.username} / {password}  (shown once)")
            )
        if demo_seed(devices_per_site=max(1, devices // 3)):
            self.stdout.write("demo fleet seeded")

        try:  # bind first: a busy port is a one-line error before anything else starts
            httpd = _ThreadingWSGIServer((host, port), WSGIRequestHandler)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host}:{port}: {exc.strerror}; stop the other process or use --port"
            ) from exc
        httpd.set_app(get_internal_wsgi_application())
        stop = threading.Event()
        running = []
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            for component in components(
                stop=stop, devices=devices, server_url=f"http://{host}:{port}", stdout=self.stdout
            ):
                try:
                    component.start()
                except Exception as exc:  # e.g. the broker's port (MQTT_DEVICE_PORT) is taken
                    raise CommandError(f"{type(component).__name__} could not start: {exc}") from exc
                running.append(component)
            self.stdout.write(
                self.style.SUCCESS(f"Fleet is up: http://{host}:{port}/  (API docs at /api/docs/)")
            )
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            httpd.server_close()
            stop.set()
            for component in reversed(running):
                component.stop()
            self.stdout.write("stopped")
