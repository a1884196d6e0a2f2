"""`manage.py ingest`: the MQTT ingest process (run N replicas on the shared subscription)."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from prometheus_client import start_http_server

from telemetry.ingest.runner import run_ingest


class Command(BaseCommand):
    help = "Subscribe to everything devices publish and commit it in batches (SIGTERM: finish, ack, exit)."

    def add_arguments(self, parser):
        parser.add_argument("--metrics-port", type=int, default=settings.INGEST_METRICS_PORT, help="0: none")
        parser.add_argument("--client-id", default=None, help="stable per replica (default: settings)")
        parser.add_argument("--batch-max", type=int, default=None)
        parser.add_argument("--batch-ms", type=int, default=None)
        parser.add_argument("--no-shared", action="store_true", help="plain subscription even on MQTT 5")

    def handle(self, *args, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if options["metrics_port"]:
            start_http_server(options["metrics_port"], addr="0.0.0.0")  # noqa: S104 - scraped by Prometheus
        runner = run_ingest(
            stop,
            client_id=options["client_id"],
            batch_max=options["batch_max"],
            batch_ms=options["batch_ms"],
            shared=False if options["no_shared"] else None,
        )
        self.stdout.write(f"ingest stopped after {runner.batches} batches")
