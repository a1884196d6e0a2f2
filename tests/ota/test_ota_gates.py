"""Quality gates: the arithmetic (ota.gates), and the engine acting on it with quality windows that come
in through the real ingest, like a camera's up/telemetry: pass and go on, fail and stop with the
reason, too few samples and wait."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from fleet.models import AuditEntry
from ota import gates
from ota.errors import OtaError
from ota.models import Deployment, DeviceUpdate
from ota.services import deployment_create, deployment_resume, tick
from telemetry.ingest.services import ingest_batch
from telemetry.quality.summary import summarize
from tests.ota.test_ota_rollout import deploy, finish
from tests.telemetry.helpers import raw, sample, telemetry_payload

LAT = "latency_p95_ms"


def rows(n_devices: int, *, p95: float = 40.0, fps: float = 5.0, person: int = 60, crashes: int = 0, **kw):
    """One 10-minute window per device, at `fps` frames per second."""
    return [
        {
            "device_id": i,
            "seconds": 600.0,
            "frames": int(fps * 600),
            "latency_p50_ms": p95 * 0.7,
            "latency_p95_ms": p95,
            "detections": {"person": person},
            "crashes": crashes,
            **kw,
        }
        for i in range(n_devices)
    ]


SETTINGS = {
    "min_devices": 3,
    "min_frames": 1000,
    "latency_p95_regression": 0.25,
    "fps_drop": 0.2,
    "detection_rate_change": 0.5,
    "crash_rate_max": 1.0,
}


class TestArithmetic:
    def test_a_release_like_the_old_one_passes_every_check(self):
        verdict, checks = gates.evaluate(
            summarize(rows(3, p95=42)), summarize(rows(5)), SETTINGS, shadow=False
        )
        assert verdict == "passed"
        assert {c.metric for c in checks} == {LAT, "fps", "detections_per_hour", "crashes_per_hour"}
        lat = next(c for c in checks if c.metric == LAT)
        assert (lat.candidate, lat.control, round(lat.change, 3)) == (42.0, 40.0, 0.05)

    def test_latency_regression_beyond_the_threshold_fails_with_its_numbers(self):
        verdict, checks = gates.evaluate(
            summarize(rows(3, p95=60)), summarize(rows(5)), SETTINGS, shadow=False
        )
        lat = next(c for c in checks if c.metric == LAT)
        assert verdict == "failed" and lat.state == "failed"
        assert (lat.candidate, lat.control, lat.change, lat.threshold) == (60.0, 40.0, 0.5, 0.25)

    def test_an_fps_drop_and_a_detection_rate_change_fail_per_label(self):
        candidate = summarize(rows(3, fps=3.0, person=20))
        verdict, checks = gates.evaluate(candidate, summarize(rows(5)), SETTINGS, shadow=False)
        failed = {(c.metric, c.label) for c in checks if c.state == "failed"}
        assert verdict == "failed"
        assert failed == {("fps", None), ("detections_per_hour", "person")}
        person = next(c for c in checks if c.label == "person")
        # 20 detections in 10 minutes is 120 per camera-hour, against 360: -67%.
        assert (person.candidate, person.control, round(person.change, 3)) == (120.0, 360.0, -0.667)

    def test_a_label_the_old_model_never_reported_fails_as_new(self):
        candidate = summarize(rows(3, detections={"person": 60, "dog": 50}))
        verdict, checks = gates.evaluate(candidate, summarize(rows(5)), SETTINGS, shadow=False)
        dog = next(c for c in checks if c.label == "dog")
        assert verdict == "failed" and dog.detail == "new label"

    def test_rare_labels_below_the_minimum_are_not_judged(self):
        candidate = summarize(rows(3, detections={"person": 60, "dog": 1}))
        verdict, checks = gates.evaluate(candidate, summarize(rows(5)), SETTINGS, shadow=False)
        assert verdict == "passed" and all(c.label != "dog" for c in checks)

    def test_crashes_count_per_camera_hour_above_the_control(self):
        verdict, checks = gates.evaluate(
            summarize(rows(3, crashes=2)), summarize(rows(5)), SETTINGS, shadow=False
        )
        crash = next(c for c in checks if c.metric == "crashes_per_hour")
        # 2 crashes per 10-minute window = 12 per camera-hour, control 0.
        assert verdict == "failed" and (crash.candidate, crash.change) == (12.0, 12.0)

    @pytest.mark.parametrize(
        ("candidate", "control", "why"),
        [
            (rows(2), rows(5), "candidate: 2 of 3 device(s)"),
            (rows(3, fps=0.1), rows(5), "candidate: 180 of 1000 frames"),
            (rows(3), rows(1), "control: 1 of 3 device(s)"),
            (rows(3), [], "control: 0 of 3"),
        ],
    )
    def test_too_few_samples_keep_the_gate_waiting_never_passing(self, candidate, control, why):
        # Even a candidate 10x slower does not fail on too small a sample: it waits.
        slow = [{**r, "latency_p95_ms": 400.0} for r in candidate]
        verdict, checks = gates.evaluate(summarize(slow), summarize(control), SETTINGS, shadow=False)
        assert verdict == "waiting"
        assert checks[0].metric == "sample" and why in checks[0].detail

    def test_shadow_agreement_checks_recall_and_extras_and_wait_for_enough_detections(self):
        settings = {"min_devices": 1, "min_frames": 10, "shadow_recall_min": 0.9, "shadow_extra_max": 0.2}
        good = summarize(rows(2, matched=95, reference=100, extra=5))
        assert gates.evaluate(good, summarize([]), settings, shadow=True)[0] == "passed"
        blind = summarize(rows(2, matched=50, reference=100, extra=5))
        verdict, checks = gates.evaluate(blind, summarize([]), settings, shadow=True)
        recall = next(c for c in checks if c.metric == "shadow_recall")
        assert verdict == "failed" and recall.candidate == 0.5
        few = summarize(rows(1, matched=1, reference=5, extra=0))
        assert gates.evaluate(few, summarize([]), settings, shadow=True)[0] == "waiting"

    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            ([1], "must be an object"),
            ({"latency": 0.2}, "unknown gate setting gates.latency"),
            ({"fps_drop": 2}, "gates.fps_drop must be within 0..1"),
            ({"fps_drop": "0.1"}, "must be a number"),
            ({"min_devices": 2.5, "fps_drop": 0.1}, "gates.min_devices must be an integer"),
            ({"fps_drop": 0.1, "on_fail": "explode"}, "on_fail is one of: pause, abort"),
            ({"min_devices": 3}, "names no threshold"),
            ({"shadow_recall_min": 0.9}, "need a shadow deployment"),
        ],
    )
    def test_bad_settings_are_refused_by_name(self, bad, message):
        with pytest.raises(ValueError, match=message):
            gates.check_settings(bad, shadow=False)


# --- the engine ---------------------------------------------------------------

pytestmark_db = pytest.mark.django_db

GATES = {"min_devices": 2, "min_frames": 500, "latency_p95_regression": 0.25, "fps_drop": 0.2}


def report_quality(device, *, version: str, p95: float = 40.0, fps: float = 5.0, model: str = "person-det"):
    """One 5-minute quality window, ending now, through the real ingest as up/telemetry."""
    end = timezone.now().timestamp()
    window = {
        "model": model,
        "version": version,
        "start": end - 300,
        "end": end,
        "frames": int(fps * 300),
        "latency_p50_ms": p95 * 0.7,
        "latency_p95_ms": p95,
        "fps": fps,
        "detections": {"person": 100},
        "score_mean": 0.6,
    }
    result = ingest_batch(
        messages=[
            raw(device.device_id, "telemetry", telemetry_payload([sample(end)], ts=end, quality=[window]))
        ]
    )
    assert not result.dead_letters


@pytest.fixture
def canaried(system, release_factory, fleet_devices, outbox, sim):
    """10 devices of one site on 1.0.0; 2.0.0 goes to 3 canaries first, with gates; the canaries install."""

    def start(gates_settings=GATES, **strategy):
        old, new = release_factory("1.0.0"), release_factory("2.0.0")
        devices = fleet_devices(10)
        deployment = deploy(
            system, new, devices, canary_count=3, waves=[100], gates=gates_settings, **strategy
        )
        canaries = [d for d in devices if outbox.for_device(d.device_id)]
        for d in canaries:
            finish(sim(d.device_id), outbox, d.device_id)
        rest = [d for d in devices if d not in canaries]
        return deployment, canaries, rest, old, new

    return start


def _offered(outbox, devices) -> int:
    return sum(bool(outbox.for_device(d.device_id)) for d in devices)


@pytestmark_db
def test_a_good_release_passes_its_gate_and_the_rollout_completes(canaried, outbox, sim):
    deployment, canaries, rest, _, _ = canaried()
    tick()
    deployment.refresh_from_db()
    assert deployment.state == "running" and _offered(outbox, rest) == 0  # no numbers yet: waiting
    assert deployment.gate_results[0]["state"] == "waiting"
    for d in canaries:
        report_quality(d, version="2.0.0", p95=42.0)
    for d in rest:
        report_quality(d, version="1.0.0", p95=40.0)
    tick()
    deployment.refresh_from_db()
    gate = deployment.gate_results[0]
    assert gate["state"] == "passed" and gate["label"] == "canary"
    (cohort,) = gate["cohorts"]
    assert cohort["candidate"]["devices"] == 3 and cohort["control"]["devices"] == 7
    assert cohort["control_scope"] == "same_sites"
    assert _offered(outbox, rest) == 7  # the gate opened the next wave
    for d in rest:
        finish(sim(d.device_id), outbox, d.device_id)
    deployment.refresh_from_db()
    assert deployment.state == "completed"
    assert AuditEntry.objects.filter(action="deployment.gate_passed", object_id=str(deployment.pk)).exists()


@pytestmark_db
def test_a_slow_build_fails_the_latency_gate_and_pauses_with_the_reason(canaried, outbox, system):
    deployment, canaries, rest, _, _ = canaried()
    for d in canaries:
        report_quality(d, version="2.0.0", p95=80.0)
    for d in rest:
        report_quality(d, version="1.0.0", p95=40.0)
    for _ in range(3):  # idempotent: ticks after the decision change nothing
        tick()
    deployment.refresh_from_db()
    assert deployment.state == "paused" and _offered(outbox, rest) == 0
    reason = deployment.gate_results[0]["reason"]
    assert reason["code"] == "gate_failed" and reason["metric"] == LAT and reason["wave"] == 0
    assert (reason["candidate"], reason["control"], reason["change"], reason["threshold"]) == (
        80.0,
        40.0,
        1.0,
        0.25,
    )
    assert reason["hardware_model"] == "cam-x1"
    assert reason["cohorts"]["candidate"]["devices"] == 3 and reason["cohorts"]["control"]["devices"] == 7
    assert reason["cohorts"]["candidate"]["version"] == "2.0.0"
    assert deployment.state_reason.startswith("gate_failed: latency_p95_ms on wave 0 (canary)")
    assert "candidate 80.0 vs control 40.0" in deployment.state_reason
    assert AuditEntry.objects.filter(action="deployment.gate_failed").count() == 1
    # The operator looks, accepts and resumes: that gate is overridden and the rollout goes on.
    deployment_resume(actor=system, deployment=deployment)
    deployment.refresh_from_db()
    assert deployment.state == "running" and deployment.gate_results[0]["state"] == "overridden"
    assert _offered(outbox, rest) == 7


@pytestmark_db
def test_a_failed_gate_aborts_and_rolls_back_when_the_strategy_says_so(
    system, release_factory, fleet_devices, outbox, sim
):
    old, new = release_factory("1.0.0"), release_factory("2.0.0")
    devices = fleet_devices(8)
    first = deploy(system, old, devices)
    for d in devices:
        finish(sim(d.device_id), outbox, d.device_id)
    outbox.clear()
    deployment = deploy(
        system,
        new,
        devices,
        canary_count=3,
        waves=[100],
        auto_rollback=True,
        gates={**GATES, "on_fail": "abort"},
    )
    canaries = [d for d in devices if outbox.for_device(d.device_id)]
    for d in canaries:
        finish(sim(d.device_id, installed=old.serial), outbox, d.device_id)
    for d in canaries:
        report_quality(d, version="2.0.0", fps=2.0)
    for d in devices:
        if d not in canaries:
            report_quality(d, version="1.0.0", fps=5.0)
    tick()
    deployment.refresh_from_db()
    assert deployment.state == "rolled_back"
    assert deployment.gate_results[0]["reason"]["metric"] == "fps"
    (child,) = Deployment.objects.filter(rollback_of=deployment)
    assert child.release.artifact == old.artifact and child.release.serial > new.serial
    assert sorted(
        DeviceUpdate.objects.filter(deployment=child).values_list("device_id", flat=True)
    ) == sorted(d.pk for d in canaries)
    assert first.pk != child.pk


@pytestmark_db
def test_too_few_samples_keep_the_gate_waiting_then_pause_after_max_wait(canaried, outbox):
    deployment, canaries, rest, _, _ = canaried({**GATES, "max_wait_s": 600})
    report_quality(canaries[0], version="2.0.0", p95=400.0)  # one device: not a sample, even this slow
    for d in rest:
        report_quality(d, version="1.0.0")
    now = timezone.now()
    for minutes in (1, 5, 9):
        tick(now=now + dt.timedelta(minutes=minutes))
        deployment.refresh_from_db()
        assert deployment.state == "running" and _offered(outbox, rest) == 0
        gate = deployment.gate_results[0]
        assert gate["state"] == "waiting"
        assert "candidate: 1 of 2 device(s) reporting" in gate["cohorts"][0]["checks"][0]["detail"]
    tick(now=now + dt.timedelta(minutes=11))
    deployment.refresh_from_db()
    assert deployment.state == "paused" and _offered(outbox, rest) == 0
    assert deployment.state_reason.startswith(
        "gate_waiting: wave 0 has not enough quality samples after 600s"
    )


@pytestmark_db
def test_the_control_cohort_prefers_the_same_sites_and_widens_to_the_same_hardware(
    canaried, fleet_devices, outbox
):
    deployment, canaries, _, _, _ = canaried(min_finished=1)
    elsewhere = fleet_devices(4)  # another site, same hardware, not in the deployment
    for d in canaries:
        report_quality(d, version="2.0.0")
    for d in elsewhere:  # only devices at another site report the old model
        report_quality(d, version="1.0.0")
    tick()
    deployment.refresh_from_db()
    gate = deployment.gate_results[0]
    assert gate["state"] == "passed"
    assert (
        gate["cohorts"][0]["control_scope"] == "same_hardware"
        and gate["cohorts"][0]["control"]["devices"] == 4
    )


@pytestmark_db
def test_gate_settings_are_checked_at_create_and_shown_in_the_api(
    system, release_factory, fleet_devices, operator_client, canaried
):
    release = release_factory("3.0.0")
    devices = fleet_devices(2)
    with pytest.raises(OtaError) as err:
        deployment_create(
            actor=system,
            data={
                "name": "x",
                "release": release,
                "targets": {"devices": [devices[0].device_id]},
                "gates": {"p95": 1},
            },
        )
    assert err.value.fields == {
        "gates": [f"unknown gate setting gates.p95 (known: {', '.join(gates.GATE_SETTINGS)}, on_fail)"]
    }
    deployment, canaries, rest, _, _ = canaried()
    for d in canaries:
        report_quality(d, version="2.0.0", p95=80.0)
    for d in rest:
        report_quality(d, version="1.0.0")
    tick()
    body = operator_client.get(f"/api/v1/deployments/{deployment.pk}/").json()
    assert body["gates"] == GATES
    (gate,) = body["gate_results"]
    assert gate["state"] == "failed" and gate["reason"]["metric"] == LAT
    assert gate["cohorts"][0]["candidate"]["latency_p95_ms"] == 80.0


@pytestmark_db
def test_the_deployment_page_shows_the_gate_its_cohorts_and_numbers(canaried, client):
    from django.urls import reverse

    from tests.factories import UserFactory

    client.force_login(UserFactory(role="viewer"))
    deployment, canaries, rest, _, _ = canaried()
    for d in canaries:
        report_quality(d, version="2.0.0", p95=80.0)
    for d in rest:
        report_quality(d, version="1.0.0")
    tick()
    page = client.get(reverse("ota:deployment", args=[deployment.pk])).content.decode()
    assert 'data-gate-wave="0" data-gate-state="failed"' in page
    assert 'data-check="latency_p95_ms"' in page and "+100%" in page
    assert "3 camera(s) on the new model against 7 control camera(s) (same sites)" in page
    assert "gate_failed: latency_p95_ms on wave 0 (canary)" in page
    assert "latency p95 regression 0.25" in page  # the strategy lists the gate's settings


@pytestmark_db
def test_the_create_form_takes_gates_and_shadow_and_refuses_bad_ones_with_the_reason(
    client, release_factory, fleet_devices
):
    from django.urls import reverse

    from tests.factories import UserFactory

    client.force_login(UserFactory(role="operator"))
    release = release_factory("2.0.0")
    devices = fleet_devices(4)
    form = {"name": "gated", "release": release.pk, "devices": ", ".join(d.device_id for d in devices),
            "canary_count": 1, "waves": "100", "soak_s": 0, "min_finished": 1, "device_timeout_s": 60}  # fmt: skip
    refused = client.post(reverse("ota:deployment-create"), {**form, "gates": '{"fps_drop": 3}'})
    assert "gates.fps_drop must be within 0..1" in refused.content.decode()
    refused = client.post(reverse("ota:deployment-create"), {**form, "shadow": '{"share": 2}'})
    assert "shadow.share must be within (0..1" in refused.content.decode()
    done = client.post(
        reverse("ota:deployment-create"),
        {**form, "gates": '{"fps_drop": 0.2, "min_devices": 1}', "shadow": '{"share": 0.1}'},
    )
    assert done.status_code == 302
    created = Deployment.objects.get(name="gated")
    assert created.gates == {"fps_drop": 0.2, "min_devices": 1}
    assert created.shadow == {"share": 0.1, "cpu_budget_pct": 25.0, "soak_s": 0}
    page = client.get(done.url).content.decode()
    assert "10% of frames, CPU budget 25.0%" in page


# --- shadow ---------------------------------------------------------------------

SHADOW_GATES = {"min_devices": 1, "min_frames": 100, "min_detections": 20, "shadow_recall_min": 0.9}


def report_shadow(device, *, version: str, matched: int, reference: int = 100, extra: int = 0):
    """The same five minutes twice, as an agent in shadow sends them: the active model and the candidate."""
    end = timezone.now().timestamp()
    base = {"model": "person-det", "start": end - 300, "end": end, "frames": 300, "latency_p50_ms": 30.0,
            "latency_p95_ms": 40.0, "detections": {"person": reference}}  # fmt: skip
    windows = [
        {**base, "version": "1.0.0"},
        {
            **base,
            "version": version,
            "role": "shadow",
            "frames": 150,
            "matched": matched,
            "reference": reference,
            "extra": extra,
        },
    ]
    result = ingest_batch(
        messages=[
            raw(device.device_id, "telemetry", telemetry_payload([sample(end)], ts=end, quality=windows))
        ]
    )
    assert not result.dead_letters


def shadow_to(sim_device, outbox, device_id) -> None:
    """The device takes its latest (shadow) offer to "shadow", as the agent reports it."""
    from ota import handlers

    offer = outbox.offers(device_id)[-1]
    assert offer.shadow is not None
    sim_device.verify(offer)
    for state in ("downloading", "verifying", "shadow"):
        handlers.handle(device_id=device_id, message=sim_device.report(offer, state))


@pytestmark_db
def test_a_shadow_wave_is_activated_only_after_its_gate_passes(
    system, release_factory, fleet_devices, outbox, sim
):
    new = release_factory("2.0.0")
    devices = fleet_devices(4)
    sims = {d.device_id: sim(d.device_id) for d in devices}
    shadow = {"share": 0.5, "cpu_budget_pct": 20, "soak_s": 0}
    deployment = deploy(
        system,
        new,
        devices,
        canary_count=1,
        waves=[100],
        gates=SHADOW_GATES,
        shadow=shadow,
        device_timeout_s=60,
    )
    (canary,) = [d for d in devices if outbox.for_device(d.device_id)]
    offer = outbox.offers(canary.device_id)[-1]
    assert (offer.shadow.share, offer.shadow.cpu_budget_pct) == (0.5, 20.0)
    shadow_to(sims[canary.device_id], outbox, canary.device_id)
    from ota.services.rollout import _timeouts

    # Far past the device timeout: a camera in shadow waits for the server, it does not time out.
    assert _timeouts(deployment, timezone.now() + dt.timedelta(hours=2)) == 0
    tick()
    update = DeviceUpdate.objects.get(deployment=deployment, device=canary)
    deployment.refresh_from_db()
    assert update.state == "shadow" and deployment.gate_results[0]["state"] == "waiting"
    assert len(outbox.offers(canary.device_id)) == 1  # not activated
    report_shadow(canary, version="2.0.0", matched=97)
    tick()
    deployment.refresh_from_db()
    gate = deployment.gate_results[0]
    assert gate["state"] == "passed" and gate["mode"] == "shadow", str(gate)
    assert gate["cohorts"][0]["control_scope"] == "same_cameras"
    assert {c["metric"] for c in gate["cohorts"][0]["checks"]} == {"shadow_recall"}
    activation = outbox.offers(canary.device_id)[-1]
    assert activation.shadow is None and activation.manifest == offer.manifest  # the same release: switch
    finish(sims[canary.device_id], outbox, canary.device_id)
    rest = [d for d in devices if d != canary]
    assert all(outbox.offers(d.device_id)[-1].shadow is not None for d in rest)  # the next wave shadows first
    for d in rest:
        shadow_to(sims[d.device_id], outbox, d.device_id)
        report_shadow(d, version="2.0.0", matched=95)
    tick()
    for d in rest:
        finish(sims[d.device_id], outbox, d.device_id)
    deployment.refresh_from_db()
    assert deployment.state == "completed" and [g["state"] for g in deployment.gate_results] == [
        "passed",
        "passed",
    ]


@pytestmark_db
def test_a_camera_offline_when_its_shadow_wave_is_activated_switches_when_it_comes_back(
    system, release_factory, fleet_devices, outbox, sim
):
    """The wave's gate passes on the cameras that shadowed; one that was offline (told, never
    delivered) is told to switch too, so the stale shadow offer it finds on reconnecting is
    replaced. Even if it runs that one first, it ends on the release and the rollout completes
    (a camera in shadow never times out: left there, it would hold the wave open for ever)."""
    from ota import handlers

    new = release_factory("2.0.0")
    (online,) = fleet_devices(1)
    (away,) = fleet_devices(1, online=False)
    sims = {d.device_id: sim(d.device_id) for d in (online, away)}
    deployment = deploy(
        system, new, [online, away], canary_count=0, waves=[100], gates=SHADOW_GATES,
        shadow={"share": 0.5, "soak_s": 0}, device_timeout_s=60,
    )  # fmt: skip
    stale = outbox.offers(away.device_id)[-1]
    assert stale.shadow is not None
    assert DeviceUpdate.objects.get(deployment=deployment, device=away).delivered_at is None
    shadow_to(sims[online.device_id], outbox, online.device_id)
    report_shadow(online, version="2.0.0", matched=97)
    tick()
    deployment.refresh_from_db()
    assert deployment.gate_results[0]["state"] == "passed" and deployment.shadow_activated_wave == 0
    for device in (online, away):  # both told to switch: the same release, no shadow
        switch = outbox.offers(device.device_id)[-1]
        assert switch.shadow is None and switch.manifest == stale.manifest
    finish(sims[online.device_id], outbox, online.device_id)
    # Back online, it runs the stale shadow offer first (the broker had it), then the switch.
    sims[away.device_id].verify(stale)
    for state in ("downloading", "verifying", "shadow"):
        handlers.handle(device_id=away.device_id, message=sims[away.device_id].report(stale, state))
    finish(sims[away.device_id], outbox, away.device_id)
    deployment.refresh_from_db()
    assert deployment.state == "completed"
    assert set(DeviceUpdate.objects.filter(deployment=deployment).values_list("state", flat=True)) == {
        "succeeded"
    }


@pytestmark_db
def test_a_build_that_misses_in_shadow_is_stopped_on_the_canary_and_never_activated(
    system, release_factory, fleet_devices, outbox, sim
):
    new = release_factory("2.0.0")
    devices = fleet_devices(4)
    deployment = deploy(
        system,
        new,
        devices,
        canary_count=1,
        waves=[100],
        gates={**SHADOW_GATES, "on_fail": "abort"},
        shadow={"share": 0.2},
    )
    (canary,) = [d for d in devices if outbox.for_device(d.device_id)]
    shadow_to(sim(canary.device_id), outbox, canary.device_id)
    report_shadow(canary, version="2.0.0", matched=30, extra=12)
    tick()
    deployment.refresh_from_db()
    assert deployment.state == "aborted"
    reason = deployment.gate_results[0]["reason"]
    assert (reason["metric"], reason["candidate"], reason["threshold"]) == ("shadow_recall", 0.3, 0.9)
    assert reason["cohorts"]["control"]["scope"] == "same_cameras"
    assert deployment.state_reason.startswith("gate_failed: shadow_recall on wave 0 (canary)")
    update = DeviceUpdate.objects.get(deployment=deployment, device=canary)
    assert (update.state, update.reason) == ("cancelled", "deployment aborted while shadow")
    # Never activated: the canary got the shadow offer, then the clearing (empty) payload; the rest nothing.
    assert [bool(p) for p in outbox.for_device(canary.device_id)] == [True, False]
    assert all(not outbox.for_device(d.device_id) for d in devices if d != canary)


@pytestmark_db
def test_shadow_settings_are_checked_by_name_and_default(system, release_factory, fleet_devices):
    release = release_factory("2.0.0")
    (device,) = fleet_devices(1)
    base = {"name": "x", "release": release, "targets": {"devices": [device.device_id]}}
    for shadow, gates_settings, field, message in (
        ({"share": 0}, {}, "shadow", "shadow.share must be within (0..1"),
        ({"cpu_budget_pct": 0}, {}, "shadow", "shadow.cpu_budget_pct must be within (0..100"),
        ({"share": 0.2, "every": 3}, {}, "shadow", "unknown shadow setting shadow.every"),
        ({}, {"shadow_recall_min": 0.9}, "gates", "need a shadow deployment"),
    ):
        with pytest.raises(OtaError) as err:
            deployment_create(actor=system, data={**base, "shadow": shadow, "gates": gates_settings})
        assert field in err.value.fields and message in err.value.fields[field][0]
    deployment = deployment_create(actor=system, data={**base, "shadow": {"soak_s": 60}})
    assert deployment.shadow == {"share": gates.DEFAULT_SHADOW_SHARE, "cpu_budget_pct": 25.0, "soak_s": 60}
