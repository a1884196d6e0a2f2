"""Rollout benchmark: one release to N simulated devices through a real Mosquitto, three waves, no soak,
against bare MQTT round trips measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fleet_bench_rollout .venv/bin/python bench/rollout/run.py \
        [--devices 10000] [--reports final|full] [--gates] [--replicas 1]

Server side as production runs it: `manage.py ingest` (its receiver and its forked committer) takes
every up/ota report and quality window, applies them in batches and steps the deployment when devices
finish (the next wave's offers go out from there); this process starts the deployment and ticks the
engine once a second, as Celery beat does. Devices: bench/rollout/sim.py in its own process.

Baselines, before the ingest starts, through the server's publisher (fleet.mqtt) and a bare
subscriber in this process (fleet.mqtt's lean receive path, decoding each message, no database):
- `round trips`: each device gets a down/cmd and answers one up/ack; one PUBACK awaited per command
  (mqtt.publish), as the issue's aim was set against;
- `pipelined`: the same, published with mqtt.publish_many as the rollout's offers are;
- `same traffic`: pipelined, and each device answers with the messages it sends in the rollout
  (five up/ota-sized acks with --reports full, plus its quality window with --gates).
Not part of the test suite.
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

from bench.rollout.sim import answers_for  # noqa: E402

WAVES = (33, 66, 100)


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


def process_tree_cpu(procs: list[subprocess.Popen]) -> float:
    """CPU seconds (user + system) of processes and their children (the ingest forks its committer)."""
    import psutil

    total = 0.0
    for proc in procs:
        root = psutil.Process(proc.pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on this machine (the benchmark's connections among them)."""
    import psutil

    total = 0.0
    for p in psutil.process_iter(["name", "cpu_times"]):
        if p.info["name"] in ("postgres", "postmaster") and p.info["cpu_times"] is not None:
            total += p.info["cpu_times"].user + p.info["cpu_times"].system
    return total


def machine_busy() -> float:
    """CPU seconds every core spent on anything but idle, since boot."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - t.iowait


def start_ingest(port: int, replicas: int, log: Path, probe_device: str) -> list[subprocess.Popen]:
    """`manage.py ingest` replicas on the benchmark's broker and database, once they commit messages."""
    from fleet import mqtt
    from protocol import topics
    from protocol.messages import encode, make
    from protocol.up import Status
    from telemetry.models import DeviceStatus

    env = {
        **os.environ,
        "MQTT_BROKER": "mosquitto",
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(port),
        "MQTT_TLS": "false",
        "MQTT_PROTOCOL": "5",  # shared subscription between replicas
        "LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "ingest",
                "--metrics-port",
                "0",
                "--client-id",
                f"bench-ingest-{i}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
        )
        for i in range(replicas)
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        # A birth message is committed once a replica is subscribed (before that the broker drops it).
        birth = make(Status, state="online", agent_version="1.4.0")
        mqtt.publish(topics.up(probe_device, "status"), encode(birth), qos=1)
        time.sleep(0.5 * replicas)  # with replicas, give each time to subscribe
        if DeviceStatus.objects.filter(device__device_id=probe_device, status_at__isnull=False).exists():
            return procs
    stop(procs)
    raise RuntimeError(f"the ingest did not start (see {log})")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


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
    parser.add_argument("--replicas", type=int, default=1, help="manage.py ingest processes")
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from devices.models import Device, HardwareModel, Site
    from fleet import mqtt
    from fleet.audit import Actor
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
    from telemetry.models import DeviceStatus

    with connection.cursor() as cur:  # a clean slate (this database is the benchmark's own)
        cur.execute(
            "TRUNCATE ota_deviceupdate, ota_deployment, ota_release, ota_releasetrack, ota_modelartifact_hardware_models, "
            "ota_modelartifact, ota_keylistdocument, ota_signingkey, devices_device, "
            # Rows that point at devices without a constraint (they age out by retention), and the
            # message ids: left from earlier runs, they made each run slower than the one before.
            "telemetry_processedmessage, telemetry_modelqualitysample, telemetry_modelqualityrollup, "
            "telemetry_metricsample, telemetry_metricrollup, telemetry_deadletter CASCADE"
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
    # An online fleet: every camera's birth is on record (else its first report writes a status row).
    DeviceStatus.objects.bulk_create(
        (
            DeviceStatus(device_id=pk, online=True, since=now, reason="birth")
            for pk in Device.objects.values_list("pk", flat=True)
        ),
        batch_size=2000,
    )
    keys_init(actor=system, root_out=work / "root.pem")
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
    bare = mqtt.connect(client_id="bench-bare", on_publish=lambda _c, t, p, _m, _q: inbox.put((t, p)))
    bare.client.subscribe(topics.ingest_filter(False), qos=1)
    time.sleep(0.3)
    device_pks = dict(Device.objects.values_list("device_id", "pk"))
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
    traffic = answers_for(args.reports, args.gates)

    def round_trips(
        run: str, *, pipelined: bool, answers: list[str], waves: tuple[int, ...] = (100,)
    ) -> tuple[float, float]:
        """Commands out through the server's publisher, wave after wave (cumulative %); every answer of a
        wave in, decoded, at the bare subscriber before the next wave's commands go."""
        expires = time.time() + 600
        messages = [
            (
                topics.down(d, "cmd"),
                encode(
                    make(
                        Command,
                        command_id=f"{run}{d}",
                        name="reboot",
                        args={"answers": answers},
                        expires=expires,
                    )
                ),
            )
            for d in device_ids
        ]
        cpu0, t0 = time.process_time(), time.perf_counter()
        sent = 0
        for pct in waves:
            wave, sent = messages[sent : n * pct // 100], n * pct // 100
            if pipelined:  # as the rollout's offers go
                mqtt.publish_many(wave, qos=1)
            else:  # one PUBACK awaited per message, as mqtt.publish sends a command
                for topic, payload in wave:
                    mqtt.publish(topic, payload, qos=1)
            want, got, deadline = len(wave) * len(answers), 0, time.monotonic() + 300
            while got < want and time.monotonic() < deadline:
                try:
                    topic, payload = inbox.get(timeout=0.05)
                except queue.Empty:
                    continue
                decode_up(topics.parse(topic.decode()).kind, payload)
                got += 1
            assert got == want, f"only {got} of {want} answers"
        return time.perf_counter() - t0, time.process_time() - cpu0

    ingest: list[subprocess.Popen] = []
    try:
        traffic_name = "+".join(traffic)
        baselines = {
            "round trips (1 ack each, one PUBACK awaited per command)": round_trips(
                "a", pipelined=False, answers=["ack"]
            ),
            "round trips, published pipelined": round_trips("b", pipelined=True, answers=["ack"]),
            f"the rollout's traffic, bare, all at once ({traffic_name} per device)": round_trips(
                "c", pipelined=True, answers=traffic
            ),
            "the rollout's traffic, bare, in its waves (33/66/100 %)": round_trips(
                "d", pipelined=True, answers=traffic, waves=WAVES
            ),
        }
        bare.close()

        # --- the rollout: the production ingest takes every report -------------------------------
        ingest = start_ingest(port, args.replicas, work / "ingest.log", device_ids[0])
        c0 = time.perf_counter()
        deployment = deployment_create(
            actor=system,
            data={
                "name": "bench",
                "release": release,
                "targets": {"sites": [site.pk]},
                "waves": list(WAVES),
                "soak_s": 0,
                "gates": gates,
            },
        )
        create_s = time.perf_counter() - c0
        done = Deployment.objects.filter(pk=deployment.pk, state="completed")
        others = {"simulator": [sim], "broker": [broker]}
        ingest_cpu0, busy0 = process_tree_cpu(ingest), machine_busy()
        others0 = {k: process_tree_cpu(v) for k, v in others.items()} | {"PostgreSQL": postgres_cpu()}
        cpu0, t0 = time.process_time(), time.perf_counter()  # from start, as an operator sees it
        deployment_start(actor=system, deployment=deployment)
        last_tick, deadline = time.monotonic(), time.monotonic() + 600
        while time.monotonic() < deadline and not done.exists():
            time.sleep(0.02)
            if time.monotonic() - last_tick >= 1.0:  # the beat; finished devices step the engine at once
                tick()
                last_tick = time.monotonic()
        roll_s, roll_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        ingest_cpu, busy = process_tree_cpu(ingest) - ingest_cpu0, machine_busy() - busy0
        others_cpu = {
            k: v - others0[k]
            for k, v in (
                {k: process_tree_cpu(v) for k, v in others.items()} | {"PostgreSQL": postgres_cpu()}
            ).items()
        }
        state = Deployment.objects.get(pk=deployment.pk).state
        assert state == "completed", state
    finally:
        stop(ingest)
        sim.stdin.close()
        sim.wait(10)
        mqtt.close_publisher()
        broker.kill()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)

    pg = divmod(connection.pg_version, 10000)
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpu, load {os.getloadavg()[0]:.1f}, "
        f"Python {platform.python_version()}, {connection.vendor} {pg[0]}.{pg[1]}"
    )
    print(
        f"devices: {n}, reports per device: {'1 (succeeded)' if args.reports == 'final' else '5 (full)'}, "
        f"waves 33/66/100 %, soak 0, gates {'on (+1 quality window per device)' if args.gates else 'off'}, "
        f"ingest replicas {args.replicas}"
    )
    for name, (seconds, cpu) in baselines.items():
        print(f"baseline, {name}: {seconds:6.2f} s  {cpu / n * 1e3:.3f} ms CPU/device")
    print(
        f"rollout start -> all succeeded: {roll_s:6.2f} s  {(roll_cpu + ingest_cpu) / n * 1e3:.3f} ms CPU/device "
        f"(engine {roll_cpu / n * 1e3:.3f}, ingest {ingest_cpu / n * 1e3:.3f})"
    )
    print(
        f"machine busy during the rollout: {busy / roll_s / os.cpu_count():.0%} of {os.cpu_count()} cores "
        f"({busy:.1f} CPU s: server {roll_cpu + ingest_cpu:.1f}, "
        + ", ".join(f"{k} {v:.1f}" for k, v in others_cpu.items())
        + ")"
    )
    print(
        "ratios: "
        + ", ".join(f"{roll_s / s:.2f}x {name.split(' (')[0]}" for name, (s, _) in baselines.items())
    )
    print(f"deployment create ({n} targets, outside the timed span): {create_s:.2f} s")


if __name__ == "__main__":
    main()
