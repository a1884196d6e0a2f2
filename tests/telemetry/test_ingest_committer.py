"""The ingest's committer against real Mosquitto and PostgreSQL: a killed committer process, a database
outage, and the one-process mode the demo uses."""

import multiprocessing
import os
import signal
import time
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from protocol import topics
from telemetry.ingest import metrics
from telemetry.models import MetricSample, ProcessedMessage
from tests.factories import DeviceFactory
from tests.fixtures.mqtt import wait_until as _wait_until
from tests.telemetry.helpers import IngestThread, ingest_settings, telemetry_payload

pytestmark = [pytest.mark.mosquitto, pytest.mark.django_db(transaction=True)]

postgres_only = pytest.mark.skipif("postgresql" not in connection.vendor, reason="a PostgreSQL outage")


@pytest.fixture
def ingest(settings, mosquitto):
    ingest_settings(settings, mosquitto)
    made = []

    def start(**overrides) -> IngestThread:
        overrides.setdefault("client_id", f"ingest-{uuid.uuid4().hex[:6]}")
        thread = IngestThread(**overrides).start()
        made.append(thread)
        assert wait_until(lambda: metrics.CONNECTED._value.get() == 1, 10), "ingest did not connect"
        return thread

    yield start
    for thread in made:
        if thread.thread.is_alive():
            thread.stop()


def wait_until(predicate, timeout: float) -> bool:
    return _wait_until(predicate, timeout)


@pytest.fixture
def device_and_publisher(mosquitto, fleet_pki, test_publisher):
    device = DeviceFactory()
    return device, test_publisher(mosquitto, fleet_pki.device(device.device_id))


def committers() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name == "fleet-ingest-commit"]


def publish_all(publisher, device, prefix: str, n: int) -> None:
    for i in range(n):
        publisher.publish(
            topics.up(device.device_id, "telemetry"), telemetry_payload(id=f"{prefix}-{i}"), wait=False
        )
    assert publisher.wait_all(30), "publisher did not get every PUBACK back"


@contextmanager
def database_refusing_connections():
    """A real outage as the ingest sees it: PostgreSQL refuses every new connection to the test database
    and ends the open ones, except this test's own (so it can look). Done from the postgres database:
    a database cannot refuse connections to itself."""
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own_pid,) = cursor.fetchone()
    params = {**connection.get_connection_params(), "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**params) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
            [name, own_pid],
        )
        try:
            yield
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name)))


def test_receiving_and_committing_run_in_two_processes(ingest, device_and_publisher):
    device, publisher = device_and_publisher
    ingest()
    assert len(committers()) == 1
    publish_all(publisher, device, "two", 50)
    assert wait_until(lambda: ProcessedMessage.objects.filter(device_id=device.device_id).count() == 50, 15)
    assert committers()[0].pid != os.getpid()


def test_a_killed_committer_is_replaced_and_every_message_is_committed_once(ingest, device_and_publisher):
    device, publisher = device_and_publisher
    starts = metrics.COMMITTER_STARTS._value.get()
    ingest()
    publish_all(publisher, device, "k", 1500)
    assert wait_until(lambda: ProcessedMessage.objects.filter(device_id=device.device_id).exists(), 15)
    os.kill(committers()[0].pid, signal.SIGKILL)  # in the middle of the stream
    publish_all(publisher, device, "after", 1500)

    assert wait_until(lambda: ProcessedMessage.objects.filter(device_id=device.device_id).count() == 3000, 45)
    assert MetricSample.objects.filter(device=device).count() == 3000
    assert metrics.COMMITTER_STARTS._value.get() == starts + 2
    assert len(committers()) == 1


@postgres_only
def test_a_database_outage_keeps_messages_unacknowledged_until_it_ends(ingest, device_and_publisher):
    device, publisher = device_and_publisher
    retries = metrics.DB_RETRIES._value.get()
    ingest()
    with database_refusing_connections():
        publish_all(publisher, device, "down", 100)
        time.sleep(1.5)  # the committer tries, waits 0.25 s, 0.5 s, ... and tries again
        assert ProcessedMessage.objects.filter(device_id=device.device_id).count() == 0
    assert wait_until(lambda: ProcessedMessage.objects.filter(device_id=device.device_id).count() == 100, 20)
    assert wait_until(lambda: metrics.DB_RETRIES._value.get() > retries, 5)
    assert MetricSample.objects.filter(device=device).count() == 100


@postgres_only
def test_stopping_during_an_outage_leaves_the_messages_with_the_broker(ingest, device_and_publisher):
    device, publisher = device_and_publisher
    thread = ingest(client_id="ingest-outage-stop", shared=False)
    with database_refusing_connections():
        publish_all(publisher, device, "kept", 100)
        thread.stop()  # does not wait for the database; nothing was acknowledged
    assert not committers()
    assert ProcessedMessage.objects.filter(device_id=device.device_id).count() == 0
    ingest(client_id="ingest-outage-stop", shared=False)  # the same session: the broker redelivers
    assert wait_until(lambda: ProcessedMessage.objects.filter(device_id=device.device_id).count() == 100, 20)


def test_one_process_mode_commits_in_the_receiving_process(ingest, device_and_publisher):
    device, publisher = device_and_publisher
    ingest(commit_process=False)
    assert not committers()
    publish_all(publisher, device, "one", 50)
    assert wait_until(lambda: ProcessedMessage.objects.filter(device_id=device.device_id).count() == 50, 15)
    assert MetricSample.objects.filter(device=device).count() == 50
