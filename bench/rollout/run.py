"""Rollout benchmark: one release to N simulated devices through a real Mosquitto, three waves, no soak,
next to N bare MQTT round trips (down/cmd out, up/ack back) measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fleet_bench_rollout .venv/bin/python bench/rollout/run.py

Server side (this process): the engine (deployment_start, ticks), the up/ota batch handler fed by an
ingest-style subscriber (batches of <= 1000 in one transaction, as telemetry's ingest does) and
fleet.mqtt's publisher. Devices: bench/rollout/sim.py in its own process. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fleet_bench_rollout")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(directory: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 2000\nmax_queued_messages 100000\n"
    )
    proc = subprocess.Popen(
        ["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument(
        "--reports",
        choices=["final", "full"],
        default="final",
        help="final: each device reports succeeded only; full: all five states",
    )
    parser.add_argument(
        "--gates",
        action="store_true",
        help="quality gates on every wave: each device sends a quality window after succeeded",
    )
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from devices.models import Device, HardwareModel, Site
    from fleet import mqtt
    from fleet.audit import Actor
    from ota.handlers import handle_reports
    from ota.models import Deployment, KeyRole, SigningKey
    from ota.services import (
        artifact_create,
        deployment_create,
        deployment_start,
        keys_init,
        release_create,
        tick,
    )
    from protocol import topics
    from protocol.down import Command
    from protocol.messages import decode_up, encode, make
    from telemetry.ingest.types import Inbound
    from telemetry.metrics.handlers import handle_telemetry

    with connection.cursor() as cur:  # a clean slate (this database is the benchmark's own)
        cur.execute(
            "TRUNCATE ota_deviceupdate, ota_deployment, ota_release, ota_releasetrack, ota_modelartifact_hardware_models, "
            "ota_modelartifact, ota_keylistdocument, ota_signingkey, devices_device CASCADE"
        )
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    broker, port = start_mosquitto(work)
    settings.MQTT_HOST, settings.MQTT_PORT, settings.MQTT_TLS, settings.MQTT_PROTOCOL = (
        "127.0.0.1",
        port,
        False,
        "3.1.1",
    )
    settings.STORAGE_BACKEND, settings.MEDIA_ROOT = "local", work / "media"
    n = args.devices
    system = Actor.system("bench")
    hw, _ = HardwareModel.objects.get_or_create(name="cam-x1", defaults={"cpu_arch": "arm64", "ram_mb": 2048})
    site, _ = Site.objects.get_or_create(name="Bench", defaults={"timezone": "Europe/Berlin"})
    now = timezone.now()
    Device.objects.bulk_create(
        (
            Device(
                device_id=f"cam-b{i:06d}",
                name=f"b{i}",
                hardware_model=hw,
                site=site,
                state="active",
                last_seen_at=now,
            )
            for i in range(n)
        ),
        batch_size=2000,
    )
    keys_init(actor=system, root_out=work / "root.pem")
    sys.path.insert(0, str(ROOT / "tests" / "ota"))
    from tests.ota.conftest import onnx_model_bytes

    artifact = artifact_create(
        actor=system,
        name="person-det",
        version="2.0.0",
        file=io.BytesIO(onnx_model_bytes()),
        hardware_models=[hw],
    )
    release = release_create(actor=system, artifact=artifact, hardware_models=["cam-x1"])
    root_b64 = SigningKey.objects.get(role=KeyRole.ROOT).public_key

    sim = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("sim.py")),
            "127.0.0.1",
            str(port),
            root_b64,
            args.reports,
            "gates" if args.gates else "-",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert sim.stdout.readline().strip() == "ready"
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    ingest = mqtt.connect(
        client_id="bench-ingest", on_message=lambda _c, m: inbox.put((m.topic, m.payload, timezone.now()))
    )
    ingest.client.subscribe(topics.ingest_filter(False), qos=1)
    time.sleep(0.3)
    device_pks = dict(Device.objects.values_list("device_id", "pk"))  # the ingest knows its devices
    device_ids = list(device_pks)
    gates = {}
    if args.gates:
        # The fleet's quality before the rollout: one window of the old model per device (the control).
        from protocol.messages import Telemetry
        from telemetry.quality.services import quality_record

        end = time.time()
        old = {"model": "person-det", "version": "1.0.0", "start": end - 120, "end": end, "frames": 600,
               "latency_p50_ms": 30.0, "latency_p95_ms": 45.0, "fps": 5.0, "detections": {"person": 31}}  # fmt: skip
        body = make(Telemetry, samples=[{"ts": end, "cpu_pct": 40.0, "mem_pct": 50.0}], quality=[old])
        quality_record(
            items=[
                Inbound(
                    device_pk=pk,
                    device_id=d,
                    kind="telemetry",
                    message=body,
                    received_at=timezone.now(),
                    topic="",
                )
                for d, pk in device_pks.items()
            ]
        )
        gates = {"min_devices": 10, "min_frames": 1000, "latency_p95_regression": 0.25, "fps_drop": 0.2,
                 "detection_rate_change": 0.5}  # fmt: skip

    def drain(max_items: int = 1000, wait: float = 0.05) -> list:
        items = []
        try:
            items.append(inbox.get(timeout=wait))
            while len(items) < max_items:
                items.append(inbox.get_nowait())
        except queue.Empty:
            pass
        return items

    try:
        # --- baseline: N bare round trips through the same publisher and subscriber ----------------
        cpu0, t0 = time.process_time(), time.perf_counter()
        for device_id in device_ids:
            cmd = make(Command, command_id=f"c{device_id}", name="reboot", expires=time.time() + 600)
            mqtt.publish(topics.down(device_id, "cmd"), encode(cmd), qos=1)
        acks = 0
        deadline = time.monotonic() + 300
        while acks < n and time.monotonic() < deadline:
            for _topic, payload, _ in drain():
                decode_up("ack", payload)
                acks += 1
        base_s, base_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert acks == n, f"only {acks} acks"

        # --- the rollout ---------------------------------------------------------------------------
        counter = QueryCounter()
        c0 = time.perf_counter()
        with connection.execute_wrapper(counter):
            deployment = deployment_create(
                actor=system,
                data={
                    "name": "bench",
                    "release": release,
                    "targets": {"sites": [site.pk]},
                    "waves": [33, 66, 100],
                    "soak_s": 0,
                    "gates": gates,
                },
            )
            setup_queries, create_s = counter.count, time.perf_counter() - c0
            cpu0, t0 = time.process_time(), time.perf_counter()  # from start, as an operator sees it
            deployment_start(actor=system, deployment=deployment)
            reports, last_tick = 0, time.monotonic()
            deadline = time.monotonic() + 600
            report_queries = 0
            while time.monotonic() < deadline:
                batch = drain()
                if batch:
                    items, telemetry = [], []
                    for topic, payload, received in batch:
                        parsed = topics.parse(topic)
                        inbound = Inbound(
                            device_pk=device_pks[parsed.device_id],
                            device_id=parsed.device_id,
                            kind=parsed.kind,
                            message=decode_up(parsed.kind, payload),
                            received_at=received,
                            topic=topic,
                        )
                        (items if parsed.kind == "ota" else telemetry).append(inbound)
                    before = counter.count
                    with transaction.atomic():
                        if telemetry:
                            handle_telemetry(items=telemetry)
                        if items:
                            handle_reports(items=items)
                    report_queries += counter.count - before
                    reports += len(items)
                if time.monotonic() - last_tick >= 1.0:
                    tick()
                    last_tick = time.monotonic()
                if batch and Deployment.objects.filter(pk=deployment.pk, state="completed").exists():
                    break
        roll_s, roll_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        state = Deployment.objects.get(pk=deployment.pk).state
        assert state == "completed", state
    finally:
        sim.stdin.close()
        sim.wait(10)
        ingest.close()
        mqtt.close_publisher()
        broker.kill()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}, "
        f"{connection.vendor} {'.'.join(map(str, connection.pg_version // 10000 and divmod(connection.pg_version, 10000)))}"
    )
    print(
        f"devices: {n}, reports per device: {'1 (succeeded)' if args.reports == 'final' else '5 (full)'}, waves 33/66/100 %, soak 0, "
        f"gates {'on (+1 quality window per device)' if args.gates else 'off'}"
    )
    print(f"bare round trips (down/cmd -> up/ack):  {base_s:7.2f} s  {base_cpu / n * 1e3:6.3f} ms CPU/device")
    print(
        f"rollout start -> all succeeded:        {roll_s:7.2f} s  {roll_cpu / n * 1e3:6.3f} ms CPU/device  ({roll_s / base_s:.2f}x)"
    )
    print(
        f"DB queries per device report: {report_queries / max(1, reports):.2f} ({reports} reports); "
        f"deployment create ({n} targets): {create_s:.2f} s, {setup_queries} queries; "
        f"total during rollout: {counter.count}"
    )


if __name__ == "__main__":
    main()
