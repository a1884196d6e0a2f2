"""SIGKILL `manage.py ingest` in the middle of 20,000 QoS 1 messages: after a restart, each is committed once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from protocol import topics
from telemetry.models import MetricSample, ProcessedMessage
from tests.factories import DeviceFactory
from tests.fixtures.mqtt import wait_until
from tests.telemetry.helpers import telemetry_payload

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: the ingest runs in another process (set DATABASE_URL=postgres://...)",
    ),
]

TOTAL = 20_000
MANAGE = Path(settings.BASE_DIR) / "manage.py"


def start_ingest(broker, log_file: Path) -> subprocess.Popen:
    db = connection.settings_dict
    pki = broker.fleet_pki
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "MQTT_BROKER": "mosquitto",
        "MQTT_HOST": broker.host,
        "MQTT_PORT": str(broker.server_port),
        "MQTT_CA_FILE": pki.ca_file,
        "MQTT_CLIENT_CERT": pki.ingest.cert_file,
        "MQTT_CLIENT_KEY": pki.ingest.key_file,
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, str(MANAGE), "ingest", "--metrics-port", "0", "--client-id", "ingest-crash-test"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file.open("ab"),
    )


def test_sigkill_in_the_middle_then_restart_commits_every_message_exactly_once(
    mosquitto, fleet_pki, test_publisher, tmp_path
):
    devices = [DeviceFactory() for _ in range(20)]
    log_file = tmp_path / "ingest.log"
    ingest = start_ingest(mosquitto, log_file)
    try:
        publishers = {
            d.device_id: test_publisher(mosquitto, fleet_pki.device(d.device_id), max_inflight=500)
            for d in devices
        }
        publisher = publishers[devices[0].device_id]
        probe = topics.up(devices[0].device_id, "telemetry")
        # The ingest is subscribed once a probe message lands (its session then holds everything else).
        deadline = time.monotonic() + 20
        while not ProcessedMessage.objects.filter(message_id__startswith="probe-").exists():
            assert time.monotonic() < deadline, log_file.read_text()
            publisher.publish(probe, telemetry_payload(id=f"probe-{time.monotonic_ns()}"))
            time.sleep(0.2)
        probes = ProcessedMessage.objects.filter(message_id__startswith="probe-").count()

        started = time.monotonic()
        sent = set()
        payloads = {d.device_id: topics.up(d.device_id, "telemetry") for d in devices}
        for i in range(TOTAL):
            device_id = devices[i % len(devices)].device_id
            sent.add((device_id, f"k-{i}"))
            publishers[device_id].publish(payloads[device_id], telemetry_payload(id=f"k-{i}"), wait=False)
        # Kill it once a good part is committed and more is still in flight or queued.
        assert wait_until(lambda: ProcessedMessage.objects.count() >= probes + TOTAL // 4, 40), (
            log_file.read_text()
        )
        ingest.send_signal(signal.SIGKILL)
        ingest.wait(10)
        at_kill = ProcessedMessage.objects.count() - probes
        assert at_kill < TOTAL, "the ingest finished before it could be killed; the test proves nothing"

        ingest = start_ingest(mosquitto, log_file)
        assert all(p.wait_all(40) for p in publishers.values()), "a publisher did not get every PUBACK"
        assert wait_until(lambda: ProcessedMessage.objects.count() >= probes + TOTAL, 60), (
            ProcessedMessage.objects.count(),
            log_file.read_text()[-2000:],
        )
        elapsed = time.monotonic() - started
        stored = set(
            ProcessedMessage.objects.filter(message_id__startswith="k-").values_list(
                "device_id", "message_id"
            )
        )
        assert stored == sent
        samples = MetricSample.objects.exclude(device_id=devices[0].pk).count()
        samples += MetricSample.objects.filter(device_id=devices[0].pk).count() - probes
        assert samples == TOTAL  # one sample per message: nothing twice, nothing lost
        print(f"\n{TOTAL} messages, killed at {at_kill} committed, all committed once in {elapsed:.1f} s")
    finally:
        ingest.send_signal(signal.SIGTERM)
        try:
            ingest.wait(15)
        except subprocess.TimeoutExpired:
            ingest.kill()
            ingest.wait(5)
