"""Concurrency on PostgreSQL (row locks are no-ops on SQLite): serials and ticks under parallel workers."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from ota.models import DeviceUpdate, Release
from ota.services import deployment_create, deployment_start, release_create, tick

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (DATABASE_URL=postgres://...)")


def in_threads(n: int, work) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait(5)
            work(i)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return errors


def test_concurrent_releases_never_share_or_reuse_a_serial(system, root_key_path, artifact_factory, hardware):
    artifacts = [artifact_factory(f"1.0.{i}") for i in range(6)]
    errors = in_threads(
        6, lambda i: release_create(actor=system, artifact=artifacts[i], hardware_models=[hardware.name])
    )
    assert not errors, errors
    assert sorted(Release.objects.values_list("serial", flat=True)) == [1, 2, 3, 4, 5, 6]


def test_concurrent_ticks_notify_each_device_once(system, release_factory, fleet_devices, outbox):
    release = release_factory()
    devices = fleet_devices(30)
    deployment = deployment_create(
        actor=system,
        data={
            "name": "c",
            "release": release,
            "targets": {"devices": [d.device_id for d in devices]},
            "max_concurrent": 10,
        },
    )
    deployment_start(actor=system, deployment=deployment)
    assert len(outbox.messages) == 10
    # Free every slot at once, then let four workers tick together: each device is offered exactly once.
    DeviceUpdate.objects.filter(state="notified").update(state="succeeded")
    errors = in_threads(4, lambda i: tick())
    assert not errors, errors
    topics = [t for t, _ in outbox.messages]
    assert len(topics) == len(set(topics)) == 20
    assert DeviceUpdate.objects.filter(state="notified").count() == 10
