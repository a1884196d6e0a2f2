"""The rollout engine and the up/ota handler, driven directly with protocol messages."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ota import handlers, selectors
from ota.errors import OtaError
from ota.models import Deployment, DeviceUpdate
from ota.services import (
    deployment_abort,
    deployment_create,
    deployment_resume,
    deployment_start,
    device_came_online,
    tick,
)
from protocol.errors import ManifestError
from tests.factories import DeviceFactory, HardwareModelFactory, SiteFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 10, 0, 30, tzinfo=dt.UTC)


def deploy(system, release, devices, **strategy) -> Deployment:
    data = {"name": "rollout", "release": release, "targets": {"devices": [d.device_id for d in devices]}}
    deployment = deployment_create(actor=system, data={**data, **strategy})
    return deployment_start(actor=system, deployment=deployment, now=strategy.get("scheduled_at"))


def states(deployment) -> dict[str, str]:
    return dict(DeviceUpdate.objects.filter(deployment=deployment).values_list("device__device_id", "state"))


def finish(sim, outbox, device_id, outcome="succeeded", *, reason=None, now=None) -> None:
    """The device takes its latest offer through every state to `outcome`, as an agent reports it."""
    offer = outbox.offers(device_id)[-1]
    sim.verify(offer)
    path = ["downloading", "verifying", "installing", "health_check"]
    if outcome == "failed":
        path = ["downloading"]
    for state in [*path, outcome]:
        handlers.handle(
            device_id=device_id,
            message=sim.report(offer, state, reason=reason if state == outcome else None),
            received_at=now,
        )


def test_waves_advance_and_the_deployment_completes(system, release_factory, fleet_devices, outbox, sim):
    release = release_factory()
    devices = fleet_devices(10)
    sims = {d.device_id: sim(d.device_id) for d in devices}
    deployment = deploy(system, release, devices, waves=[20, 60, 100])
    assert [p["size"] for p in Deployment.objects.get(pk=deployment.pk).plan] == [2, 4, 4]
    done: set[str] = set()
    for wave_size in (2, 4, 4):
        offered = [d for d in sims if outbox.for_device(d) and d not in done]
        assert len(offered) == wave_size  # only this wave was notified
        for device_id in offered:
            finish(sims[device_id], outbox, device_id)
            done.add(device_id)
    deployment.refresh_from_db()
    assert deployment.state == "completed"
    assert set(states(deployment).values()) == {"succeeded"}
    assert all(s.installed == release.serial for s in sims.values())
    # Every device got the same offer under a message id of its own (the presigned URL is made per wave).
    offers = [outbox.offers(d)[0] for d in sims]
    assert len({o.id for o in offers}) == len(offers)
    same = {msgspec.json.encode(msgspec.structs.replace(o, id="x", ts=0, artifact_url=None)) for o in offers}
    assert len(same) == 1


def test_a_30_percent_failure_canary_pauses_the_rollout(system, release_factory, fleet_devices, outbox, sim):
    release = release_factory()
    devices = fleet_devices(20)
    deployment = deploy(
        system, release, devices, canary_count=10, waves=[100], pause_failure_rate=0.2, min_finished=10
    )
    canaries = [d.device_id for d in devices if outbox.for_device(d.device_id)]
    assert len(canaries) == 10
    for i, device_id in enumerate(canaries):
        outcome = "rolled_back" if i < 3 else "succeeded"
        finish(sim(device_id), outbox, device_id, outcome, reason="health_check_failed: too_slow")
    deployment.refresh_from_db()
    assert deployment.state == "paused"
    assert "30%" in deployment.state_reason and "3 of 10" in deployment.state_reason
    rest = [d.device_id for d in devices if d.device_id not in canaries]
    assert not any(outbox.for_device(d) for d in rest)  # the rest never got the release
    assert DeviceUpdate.objects.get(deployment=deployment, device__device_id=canaries[0]).reason.startswith(
        "health_check_failed"
    )
    deployment_resume(actor=system, deployment=deployment)
    deployment.refresh_from_db()
    assert deployment.state == "running"
    assert all(outbox.for_device(d) for d in rest)


def test_abort_with_rollback_ships_the_old_model_under_a_higher_serial(
    system, release_factory, fleet_devices, outbox, sim
):
    old = release_factory("1.0.0")
    devices = fleet_devices(6)
    sims = {d.device_id: sim(d.device_id) for d in devices}
    first = deploy(system, old, devices)
    for device_id in sims:
        finish(sims[device_id], outbox, device_id)
    first.refresh_from_db()
    assert first.state == "completed"

    new = release_factory("2.0.0")
    assert new.serial > old.serial
    outbox.clear()
    second = deploy(
        system, new, devices, max_concurrent=2, abort_failure_rate=0.5, min_finished=2, auto_rollback=True
    )
    took, broke = [d for d in sims if outbox.for_device(d)]
    finish(sims[took], outbox, took)
    assert sims[took].installed == new.serial
    finish(sims[broke], outbox, broke, "failed", reason="hash_mismatch")

    second.refresh_from_db()
    assert second.state == "rolled_back"
    assert "50%" in second.state_reason
    child = Deployment.objects.get(rollback_of=second)
    assert child.state == "running"
    assert child.release.artifact == old.artifact and child.release.serial > new.serial
    assert set(states(child)) == {took}  # only the device that took the new model goes back
    offer = outbox.offers(took)[-1]
    manifest = sims[took].verify(offer)  # a higher serial: not a rollback attack to the device
    assert manifest.sha256 == old.artifact.sha256
    finish(sims[took], outbox, took)
    child.refresh_from_db()
    assert child.state == "completed"
    # Devices that never finished were cancelled: any retained offer they had is cleared.
    cancelled = [d for d, s in states(second).items() if s == "cancelled"]
    assert len(cancelled) == 4
    assert all(outbox.for_device(d)[-1:] in ([], [b""]) for d in cancelled)
    assert any(outbox.for_device(d)[-1:] == [b""] for d in cancelled)  # the one notified after `took`


def test_device_timeout_counts_from_delivery_and_offline_devices_get_it_on_reconnect(
    system, release_factory, fleet_devices, outbox, sim
):
    release = release_factory()
    (online,) = fleet_devices(1, online=True)
    (offline,) = fleet_devices(1, online=False)
    deployment = deploy(system, release, [online, offline], device_timeout_s=60)
    assert len(outbox.for_device(offline.device_id)) == 1  # retained: waits in the broker for it
    now = deployment.started_at
    tick(now=now + dt.timedelta(seconds=61))
    assert states(deployment) == {online.device_id: "timed_out", offline.device_id: "notified"}
    assert deployment.__class__.objects.get(pk=deployment.pk).state == "running"

    assert device_came_online(offline, now=now + dt.timedelta(seconds=100)) == 1
    assert len(outbox.for_device(offline.device_id)) == 2  # re-sent on its birth message
    tick(now=now + dt.timedelta(seconds=150))
    assert states(deployment)[offline.device_id] == "notified"
    tick(now=now + dt.timedelta(seconds=161))
    assert states(deployment)[offline.device_id] == "timed_out"
    row = DeviceUpdate.objects.get(device=offline)
    assert "60s" in row.reason
    deployment.refresh_from_db()
    assert deployment.state == "completed"
    # A late report never revives a terminal update.
    finish(sim(online.device_id), outbox, online.device_id)
    assert states(deployment)[online.device_id] == "timed_out"


def test_maintenance_window_follows_each_sites_time_zone(system, release_factory, hardware, outbox):
    release = release_factory()
    berlin, new_york = SiteFactory(timezone="Europe/Berlin"), SiteFactory(timezone="America/New_York")
    eu = [DeviceFactory(hardware_model=hardware, site=berlin, last_seen_at=T0) for _ in range(2)]
    us = [DeviceFactory(hardware_model=hardware, site=new_york, last_seen_at=T0) for _ in range(2)]
    deployment = deployment_create(
        actor=system,
        data={
            "name": "night",
            "release": release,
            "targets": {"sites": [berlin.pk, new_york.pk]},
            "window_start": "01:00",
            "window_end": "03:00",
        },
    )
    deployment_start(actor=system, deployment=deployment, now=T0)  # 01:30 Berlin, 19:30 New York
    assert all(outbox.for_device(d.device_id) for d in eu)
    assert not any(outbox.for_device(d.device_id) for d in us)
    tick(now=T0 + dt.timedelta(hours=3))  # 04:30 Berlin, 22:30 New York
    assert not any(outbox.for_device(d.device_id) for d in us)
    tick(now=T0 + dt.timedelta(hours=6))  # 01:30 New York
    assert all(outbox.for_device(d.device_id) for d in us)


def test_conflicting_deployment_is_refused_naming_devices_and_deployment(
    system, release_factory, fleet_devices, outbox
):
    release = release_factory()
    devices = fleet_devices(4)
    first = deploy(system, release, devices[:3])
    with pytest.raises(OtaError) as refused:
        deployment_create(
            actor=system,
            data={
                "name": "again",
                "release": release,
                "targets": {"devices": [d.device_id for d in devices[1:]]},
            },
        )
    assert refused.value.status == 409 and refused.value.code == "conflict"
    assert refused.value.fields["devices"] == [devices[1].device_id, devices[2].device_id]
    assert refused.value.fields["deployments"] == [first.pk]
    assert f"#{first.pk}" in refused.value.message


def test_a_draft_that_lost_its_devices_cannot_start(system, release_factory, fleet_devices, outbox):
    release = release_factory()
    devices = fleet_devices(2)
    draft = deployment_create(
        actor=system,
        data={"name": "later", "release": release, "targets": {"devices": [devices[0].device_id]}},
    )
    deploy(system, release, devices)
    with pytest.raises(OtaError) as refused:
        deployment_start(actor=system, deployment=draft)
    assert refused.value.code == "conflict" and refused.value.fields["devices"] == [devices[0].device_id]
    draft.refresh_from_db()
    assert draft.state == "draft"


def test_incompatible_and_inactive_devices_are_excluded_with_a_reason(
    system, release_factory, fleet_devices, outbox
):
    release = release_factory()
    ok = fleet_devices(1)[0]
    other_hw = DeviceFactory(hardware_model=HardwareModelFactory(name="cam-z9"), last_seen_at=ok.last_seen_at)
    quarantined = DeviceFactory(hardware_model=ok.hardware_model, state="quarantined")
    deployment = deployment_create(
        actor=system,
        data={
            "name": "mixed",
            "release": release,
            "targets": {"devices": [ok.device_id, other_hw.device_id, quarantined.device_id]},
        },
    )
    assert set(states(deployment)) == {ok.device_id}
    assert {(e["device"], e["reason"]) for e in deployment.excluded} == {
        (other_hw.device_id, "incompatible_hardware: cam-z9"),
        (quarantined.device_id, "device_quarantined"),
    }


def test_duplicate_late_and_out_of_order_reports_never_move_backwards(
    system, release_factory, fleet_devices, outbox, sim
):
    release = release_factory()
    (device,) = fleet_devices(1)
    deployment = deploy(system, release, [device])
    agent = sim(device.device_id)
    offer = outbox.offers(device.device_id)[0]
    agent.verify(offer)

    def send(state, **kw):
        return handlers.handle(device_id=device.device_id, message=agent.report(offer, state, **kw))

    assert send("installing") is True  # skipping states forward is fine
    assert send("downloading") is False  # late, older
    installing = agent.report(offer, "installing")
    assert handlers.handle(device_id=device.device_id, message=installing) is False  # duplicate
    assert send("succeeded", serial=release.serial + 7) is False  # not the offered serial
    assert handlers.handle(device_id="cam-nobody", message=agent.report(offer, "succeeded")) is False
    assert states(deployment)[device.device_id] == "installing"
    assert send("succeeded") is True
    assert send("failed", reason="disk_full") is False  # terminal stays terminal
    assert send("health_check") is False
    row = DeviceUpdate.objects.get(deployment=deployment)
    assert (row.state, row.reason) == ("succeeded", "")
    deployment.refresh_from_db()
    assert deployment.state == "completed"


def test_rate_limits_hold_devices_back_until_slots_free(system, release_factory, fleet_devices, outbox, sim):
    release = release_factory()
    devices = fleet_devices(5)
    deploy(system, release, devices, max_concurrent=2)
    offered = [d.device_id for d in devices if outbox.for_device(d.device_id)]
    assert len(offered) == 2
    finish(sim(offered[0]), outbox, offered[0])
    assert len([d for d in devices if outbox.for_device(d.device_id)]) == 3


def test_ticks_are_idempotent(system, release_factory, fleet_devices, outbox):
    release = release_factory()
    devices = fleet_devices(4)
    deploy(system, release, devices, waves=[50, 100], soak_s=600)
    sent = len(outbox.messages)
    for _ in range(3):
        tick()
    assert len(outbox.messages) == sent


def test_operator_abort_cancels_and_clears_retained_offers(system, release_factory, fleet_devices, outbox):
    release = release_factory()
    devices = fleet_devices(3)
    deployment = deploy(system, release, devices)
    deployment_abort(actor=system, deployment=deployment, reason="wrong model")
    deployment.refresh_from_db()
    assert (deployment.state, deployment.state_reason) == ("aborted", "wrong model")
    assert set(states(deployment).values()) == {"cancelled"}
    assert all(outbox.for_device(d.device_id)[-1] == b"" for d in devices)
    assert not DeviceUpdate.objects.filter(active=True).exists()  # the devices are free again


def test_scheduled_deployment_starts_when_due(system, release_factory, fleet_devices, outbox):
    release = release_factory()
    devices = fleet_devices(2)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    deployment = deployment_create(
        actor=system,
        data={
            "name": "s",
            "release": release,
            "targets": {"devices": [d.device_id for d in devices]},
            "scheduled_at": later,
        },
    )
    deployment_start(actor=system, deployment=deployment)
    deployment.refresh_from_db()
    assert deployment.state == "scheduled" and not outbox.messages
    tick(now=later + dt.timedelta(seconds=1))
    deployment.refresh_from_db()
    assert deployment.state == "running" and len(outbox.messages) == 2


def test_progress_is_one_query_whatever_the_size(system, release_factory, fleet_devices, outbox, sim):
    release = release_factory()
    small = deploy(system, release, fleet_devices(3), waves=[50, 100])
    big = deploy(system, release, fleet_devices(30), waves=[10, 50, 100])
    for deployment in (small, big):
        deployment = selectors.deployment_queryset().get(pk=deployment.pk)
        with CaptureQueriesContext(connection) as queries:
            progress = selectors.deployment_progress(deployment=deployment)
        assert len(queries) == 1
        assert progress["total"] == DeviceUpdate.objects.filter(deployment=deployment).count()
        assert sum(w["total"] for w in progress["waves"]) == progress["total"]
    assert progress["counts"]["notified"] == 3 and progress["waves"][0]["counts"]["notified"] == 3


def test_a_tampered_offer_is_refused_by_the_device_verifier(
    system, release_factory, fleet_devices, outbox, sim
):
    release = release_factory()
    (device,) = fleet_devices(1)
    deploy(system, release, [device])
    offer = outbox.offers(device.device_id)[0]
    offer.manifest["signed"]["sha256"] = "0" * 64
    with pytest.raises(ManifestError) as refused:
        sim(device.device_id).verify(offer)
    assert refused.value.reason == "bad_signature"


def test_an_ingest_batch_applies_reports_in_arrival_order(
    system, release_factory, fleet_devices, outbox, sim
):
    from telemetry.ingest.types import Inbound

    release = release_factory()
    a, b, c = fleet_devices(3)
    deployment = deploy(system, release, [a, b, c])
    offer = outbox.offers(a.device_id)[0]
    agent = sim(a.device_id)

    def item(device, state, **kw):
        message = agent.report(offer, state, **kw)
        return Inbound(
            device_pk=device.pk,
            device_id=device.device_id,
            kind="ota",
            message=message,
            received_at=dt.datetime.now(dt.UTC),
            topic=f"fleet/v1/devices/{device.device_id}/up/ota",
        )

    batch = [
        item(a, "downloading"),
        item(b, "installing"),
        item(a, "succeeded"),
        item(b, "downloading"),  # older than what b said before: ignored
        item(c, "failed", reason="disk_full"),
        item(c, "succeeded"),  # after a terminal state: ignored
        item(a, "succeeded"),  # duplicate
    ]
    handlers.handle_reports(items=batch)
    assert states(deployment) == {a.device_id: "succeeded", b.device_id: "installing", c.device_id: "failed"}
    assert DeviceUpdate.objects.get(device=c).reason == "disk_full"


def test_an_ingest_batch_of_alike_reports_is_one_statement(
    system, release_factory, fleet_devices, outbox, sim
):
    from telemetry.ingest.types import Inbound

    release = release_factory()
    devices = fleet_devices(20)
    deploy(system, release, devices)
    agent = sim(devices[0].device_id)
    offer = outbox.offers(devices[0].device_id)[0]
    now = dt.datetime.now(dt.UTC)
    batch = [
        Inbound(
            device_pk=d.pk,
            device_id=d.device_id,
            kind="ota",
            message=agent.report(offer, "downloading"),
            received_at=now,
            topic=f"fleet/v1/devices/{d.device_id}/up/ota",
        )
        for d in devices
    ]
    with CaptureQueriesContext(connection) as queries:
        handlers.handle_reports(items=batch)
    updates = [q for q in queries.captured_queries if q["sql"].startswith('UPDATE "ota_deviceupdate"')]
    assert len(updates) == 1
    assert DeviceUpdate.objects.filter(state="downloading").count() == 20


def test_successes_mid_wave_skip_the_locked_step_and_the_wave_s_last_one_advances_it(
    system, release_factory, fleet_devices, outbox, sim
):
    from telemetry.ingest.types import Inbound

    release = release_factory()
    devices = fleet_devices(10)
    deployment = deploy(system, release, devices, waves=[50, 100])
    first = [d for d in devices if outbox.for_device(d.device_id)]
    assert len(first) == 5
    offer = outbox.offers(first[0].device_id)[0]
    agent = sim(first[0].device_id)

    def succeeded(batch):
        return [
            Inbound(
                device_pk=d.pk,
                device_id=d.device_id,
                kind="ota",
                message=agent.report(offer, "succeeded"),
                received_at=dt.datetime.now(dt.UTC),
                topic=f"fleet/v1/devices/{d.device_id}/up/ota",
            )
            for d in batch
        ]

    with CaptureQueriesContext(connection) as queries:
        handlers.handle_reports(items=succeeded(first[:3]))
    # Two devices of the wave are still at work: nothing to step, so no row lock on the deployment.
    assert not any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)
    assert all(not outbox.for_device(d.device_id) for d in devices if d not in first)
    with CaptureQueriesContext(connection) as queries:
        handlers.handle_reports(items=succeeded(first[3:]))
    assert any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)
    assert all(outbox.for_device(d.device_id) for d in devices)  # the next wave, at once
    deployment.refresh_from_db()
    assert deployment.current_wave == 1
