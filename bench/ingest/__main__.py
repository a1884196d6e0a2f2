"""`python -m bench.ingest`: what one `manage.py ingest` commits per second, against baselines in the same run.

The broker is Mosquitto on the configuration `manage.py broker_config` generates (mTLS, the
ACL, persistence, queues bounded by bytes), with a PKI from `manage.py pki init`: every consumer,
the baselines included, connects as fleet-ingest on the server listener, and the publishers too
(that identity may write every device's topic; the broker does the same work per message as for
one connection per camera). Each phase: a fresh persistent MQTT 5 session per consumer is made and subscribed, the
publishers fill it with N QoS 1 messages (queued in Mosquitto), then the consumer
starts and drains it; its rate is (messages) / (first to last message or commit).
So every consumer drains the same queue from the same broker, and the publishers'
speed does not cap the figure. Consumers: a raw paho subscriber that only counts,
a naive one-ORM-call-per-message consumer, `manage.py ingest` (1 and 2 replicas on
the shared subscription), and the ingest with batched payloads (metric records/s).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ingest.consumers import tls_client

ROOT = Path(__file__).resolve().parents[2]
PG_DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/fleet_bench_ingest"


def configure() -> None:
    from bench.api import pg_database

    url = os.environ.get("DATABASE_URL", "")
    os.environ["DATABASE_URL"] = url if url.startswith(("postgres", "pgsql")) else PG_DEFAULT_URL
    pg_database(os.environ["DATABASE_URL"], drop=False, create=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(devices: int) -> list[str]:
    from devices.models import Device

    ids = [f"cam-b{i:05d}" for i in range(devices)]
    Device.objects.bulk_create(
        [Device(device_id=d, name=d, state="active") for d in ids], ignore_conflicts=True
    )
    return ids


def reset() -> None:
    from django.db import connection

    from telemetry.metrics.partitions import metrics_partitions_ensure

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE telemetry_processedmessage, telemetry_metricsample, telemetry_deadletter RESTART IDENTITY"
        )
    metrics_partitions_ensure()


def session(port: int, client_id: str, topic_filter: str | None) -> None:
    """Make a fresh persistent session subscribed to `topic_filter`, or (None) delete the session."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    client = tls_client(client_id)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600 if topic_filter else 0
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    time.sleep(0.2)
    if topic_filter:
        client.subscribe(topic_filter, options=SubscribeOptions(qos=1))
        time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def _publish(port: int, device_ids: list[str], start: int, stop: int, samples: int, prefix: str) -> None:
    from protocol import topics
    from protocol.messages import Telemetry, TelemetrySample, encode

    client = tls_client()
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    now = time.time()
    rows = [
        TelemetrySample(
            ts=now - j,
            cpu_pct=40.0 + j % 50,
            mem_pct=55.0,
            temp_c=51.5,
            fps=5.0,
            inference_ms=38.0,
            disk_free_mb=4096.0,
            link="wifi",
            queue_depth={"clip": 2},
            bytes_sent={"event": 2048},
        )
        for j in range(samples)
    ]
    infos = []
    for i in range(start, stop):
        device_id = device_ids[i % len(device_ids)]
        payload = encode(Telemetry(v=1, id=f"{prefix}-{i}", ts=now, samples=rows))
        infos.append(client.publish(topics.up(device_id, "telemetry"), payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def preload(port: int, device_ids: list[str], n: int, samples: int, publishers: int, prefix: str) -> float:
    """Publish n messages from `publishers` processes; returns messages/s of publishing."""
    started = time.monotonic()
    step = -(-n // publishers)
    procs = [
        multiprocessing.Process(
            target=_publish, args=(port, device_ids, s, min(n, s + step), samples, prefix)
        )
        for s in range(0, n, step)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    return n / (time.monotonic() - started)


def run_baseline(mode: str, port: int, client_id: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "bench.ingest.consumers", mode, str(port), client_id, str(n)],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["count"] >= n, state
    return state["count"] / (state["last"] - state["first"])


def _committed() -> int:
    """Rows committed in this phase, from the newest identity value (reset() restarts it): an index lookup, where a
    count(*) of a growing table 20 times a second cost PostgreSQL 10-20 % of a core, taken from
    the ingest it measures (the baselines pay nothing of the kind). Exact here: nothing in a
    phase conflicts or rolls back; the last poll confirms with a real count."""
    from django.db.models import Max

    from telemetry.models import ProcessedMessage

    return ProcessedMessage.objects.aggregate(m=Max("id"))["m"] or 0


def run_ingest(
    port: int,
    client_ids: list[str],
    n: int,
    log: Path,
    *,
    commit_process: bool = True,
) -> float:
    """Start one `manage.py ingest` per client id and time the drain."""
    from telemetry.models import ProcessedMessage

    env = {
        **os.environ,
        "MQTT_BROKER": "mosquitto",
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(port),
        "INGEST_COMMIT_PROCESS": str(commit_process).lower(),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "ingest", "--metrics-port", "0", "--client-id", cid],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
        )
        for cid in client_ids
    ]
    try:
        first = first_count = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            count = _committed()
            now = time.monotonic()
            if first is None and count:
                first, first_count = now, count
            if count >= n and now > first and ProcessedMessage.objects.count() >= n:
                return (n - first_count) / (now - first)
            time.sleep(0.05)
        raise RuntimeError(f"ingest did not finish: {ProcessedMessage.objects.count()}/{n}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--messages", type=int, default=30_000, help="single-sample messages per phase")
    parser.add_argument("--naive-messages", type=int, default=3_000)
    parser.add_argument("--batched-messages", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=500, help="samples per batched message")
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    configure()
    from bench.api import machine
    from protocol import topics
    from tests.fixtures.brokers import make_fleet_pki, start_mosquitto

    device_ids = seed(args.devices)
    plain, shared = topics.ingest_filter(shared=False), topics.ingest_filter(shared=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pki").mkdir()
        (Path(tmp) / "broker").mkdir()
        fleet_pki = make_fleet_pki(Path(tmp) / "pki")
        broker = start_mosquitto(Path(tmp) / "broker", fleet_pki)
        os.environ.update(
            MQTT_CA_FILE=fleet_pki.ca_file,
            MQTT_CLIENT_CERT=fleet_pki.ingest.cert_file,
            MQTT_CLIENT_KEY=fleet_pki.ingest.key_file,
        )
        port = broker.server_port  # everything here connects as a server identity
        log = Path(tmp) / "ingest.log"
        try:

            def phase(name, consumers, topic_filter, n, samples, measure):
                reset()
                for cid in consumers:
                    session(port, cid, topic_filter)
                pub_rate = preload(port, device_ids, n, samples, args.publishers, name)
                rate = measure(n)
                for cid in consumers:
                    session(port, cid, None)
                results[name] = {
                    "messages": n,
                    "samples_per_message": samples,
                    "messages_per_s": round(rate),
                    "records_per_s": round(rate * samples),
                    "publish_messages_per_s": round(pub_rate),
                }
                print(
                    f"{name:>22}: {rate:10,.0f} msg/s {rate * samples:12,.0f} records/s  (n={n}, published at {pub_rate:,.0f}/s)",
                    flush=True,
                )

            phase(
                "raw_subscriber",
                ["bench-raw"],
                plain,
                args.messages,
                1,
                lambda n: run_baseline("raw", port, "bench-raw", n),
            )
            phase(
                "ingest_1",
                ["bench-ingest-a"],
                shared,
                args.messages,
                1,
                lambda n: run_ingest(port, ["bench-ingest-a"], n, log),
            )
            phase(
                "ingest_2_replicas",
                ["bench-ingest-a", "bench-ingest-b"],
                shared,
                args.messages,
                1,
                lambda n: run_ingest(port, ["bench-ingest-a", "bench-ingest-b"], n, log),
            )
            phase(
                "ingest_1_one_process",
                ["bench-ingest-a"],
                shared,
                args.messages,
                1,
                lambda n: run_ingest(port, ["bench-ingest-a"], n, log, commit_process=False),
            )
            phase(
                "ingest_2_one_process",
                ["bench-ingest-a", "bench-ingest-b"],
                shared,
                args.messages,
                1,
                lambda n: run_ingest(
                    port, ["bench-ingest-a", "bench-ingest-b"], n, log, commit_process=False
                ),
            )
            phase(
                "naive_orm",
                ["bench-naive"],
                plain,
                args.naive_messages,
                1,
                lambda n: run_baseline("naive", port, "bench-naive", n),
            )
            phase(
                "ingest_1_batched",
                ["bench-ingest-a"],
                shared,
                args.batched_messages,
                args.samples,
                lambda n: run_ingest(port, ["bench-ingest-a"], n, log),
            )
            phase(
                "ingest_2_batched",
                ["bench-ingest-a", "bench-ingest-b"],
                shared,
                args.batched_messages,
                args.samples,
                lambda n: run_ingest(port, ["bench-ingest-a", "bench-ingest-b"], n, log),
            )
        finally:
            broker.stop()
            reset()
    info = machine() | {"loadavg_1m_at_start": round(load_start, 2)}
    raw, one = results["raw_subscriber"]["messages_per_s"], results["ingest_1"]["messages_per_s"]
    ratios = {
        "ingest_vs_raw": round(one / raw, 2),
        "ingest_vs_naive": round(one / results["naive_orm"]["messages_per_s"], 1),
        "ingest_vs_one_process": round(one / results["ingest_1_one_process"]["messages_per_s"], 2),
        "two_replicas_vs_one": round(results["ingest_2_replicas"]["messages_per_s"] / one, 2),
        "two_replicas_vs_one_one_process": round(
            results["ingest_2_one_process"]["messages_per_s"]
            / results["ingest_1_one_process"]["messages_per_s"],
            2,
        ),
        "two_replicas_vs_one_batched": round(
            results["ingest_2_batched"]["records_per_s"] / results["ingest_1_batched"]["records_per_s"], 2
        ),
    }
    print(json.dumps({"machine": info, "ratios": ratios}, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
