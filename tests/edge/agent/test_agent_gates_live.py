# ruff: noqa: F811 - pytest fixtures imported from live_fixtures and the OTA live test
"""Quality gates end to end: three real agents run the real detector (NanoDet-g) on real footage and
send their model quality in up/telemetry; the server gates a canary wave on it.

A release of the same model passes its gate (the canary against the two cameras still on the
agent's default model) and completes. A slow build of it (the real model plus work that changes
no output, made here) installs fine and passes the device's health check, but the latency gate
catches it on the canary: the rollout pauses with the reason and the other cameras never get it.
"""

from __future__ import annotations

import sys

import pytest
from agent_helpers import agent_config

from edge.enroll import enroll
from protocol import topics
from tests.edge.detector_models import default_model, miswired_model, slow_model

if "pytest_django.plugin" not in sys.modules:  # run with -p no:django
    pytest.skip("needs pytest-django's live server and database", allow_module_level=True)

from live_fixtures import hardware_model, identity_pki, live_enroll, make_token, unthrottled  # noqa: F401
from test_agent_ota_live import HARDWARE, MODEL, Server, live, ota_keys, release  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

FOOTAGE = "tests/footage/store-aisle.mp4"  # three shoppers in an aisle, looped
# The median, not p95: three agents and the test share a small machine, and a tail under CPU contention
# says more about the neighbours than about the model.
GATES = {"min_devices": 1, "min_frames": 15, "latency_p50_regression": 0.5, "fps_drop": 0.9}


class FleetServer(Server):
    """The OTA live test's server side, for several cameras and their telemetry too."""

    def __init__(self, probe, device_ids: list[str]) -> None:
        super().__init__(probe, device_ids[0])
        for device_id in device_ids[1:]:
            for kind in ("status", "ota"):
                probe.subscribe(topics.up(device_id, kind))
            probe.subscribe(topics.down(device_id, "ota"))
        for device_id in device_ids:
            probe.subscribe(topics.up(device_id, "telemetry"))


def _deploy(rel, device_ids: list[str], gates=GATES, **strategy):
    from fleet.audit import Actor
    from ota.services import deployment_create, deployment_start

    actor = Actor.system("test")
    deployment = deployment_create(
        actor=actor,
        data={
            "name": f"gated {rel.version}",
            "release": rel,
            "targets": {"devices": device_ids},
            "canary_count": 1,
            "waves": [100],
            "device_timeout_s": 120,
            "gates": gates,
            **strategy,
        },
    )
    return deployment_start(actor=actor, deployment=deployment)


def _cameras(live, make_token, ota_keys, tmp_path, n: int = 3):
    """n cameras enrolled through the live server, each with an agent config on the footage."""
    _, key = make_token(max_uses=n)
    ids = []
    configs = []
    for i in range(n):
        state = tmp_path / f"cam{i}"
        ids.append(
            enroll(
                server_url=live, token=key, state_dir=state, serial=f"SN-GATE-{i}", hardware_model=HARDWARE
            ).device_id
        )
        configs.append(
            agent_config(
                state,
                hardware_model=HARDWARE,
                ota_root_key=ota_keys,
                ota_grace_s=0.5,
                # Room for the slow build's self-test on a busy test machine: the gate is what
                # must catch it here, not the device's own budget.
                ota_health_budget_ms=10_000,
                source=FOOTAGE,
                detection={"sample_fps": 1},
                telemetry_sample_s=1.0,
                telemetry_interval_s=2.0,
            )
        )
    return ids, configs


def test_real_agents_pass_a_good_release_and_stop_a_slow_one_at_the_canary(
    live, ota_keys, make_token, mqtt_probe, embedded_broker, fleet_pki, tmp_path
):
    from edge.agent.runner import Agent
    from ota.models import Deployment, DeviceUpdate
    from telemetry.models import ModelQualitySample

    ids, configs = _cameras(live, make_token, ota_keys, tmp_path)
    probe = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert probe.start(), probe.failure
    server = FleetServer(probe, ids)
    agents = [Agent(c) for c in configs]
    for agent in agents:
        agent.start()
    try:
        # Every camera runs the agent's default model and says how it does, per model version.
        server.until(
            lambda: (
                set(
                    ModelQualitySample.objects.filter(
                        model="nanodet-g", version="default", frames__gt=0
                    ).values_list("device__device_id", flat=True)
                )
                == set(ids)
            ),
            "quality windows of the default model from every camera",
            timeout=60,
        )

        # 1. The same model as a release: the canary's latency and fps match the control's; it goes on.
        good = release("2.0.0", default_model().read_bytes())
        dep = _deploy(good, ids)
        server.until(
            lambda: Deployment.objects.get(pk=dep.pk).state == "completed", "good release completed", 90
        )
        dep.refresh_from_db()
        gate = dep.gate_results[0]
        assert gate["state"] == "passed" and gate["label"] == "canary"
        (cohort,) = gate["cohorts"]
        assert cohort["candidate"]["devices"] == 1 and cohort["control"]["devices"] == 2
        assert cohort["candidate"]["frames"] >= GATES["min_frames"]
        assert {c["metric"] for c in cohort["checks"]} == {"latency_p50_ms", "fps"}
        assert set(DeviceUpdate.objects.filter(deployment=dep).values_list("state", flat=True)) == {
            "succeeded"
        }
        assert all(a.ota.active_release().version == "2.0.0" for a in agents)

        # 2. A slow build: installed and healthy on the canary, then caught by the latency gate.
        slow = release("3.0.0", slow_model(matmuls=60))
        dep = _deploy(slow, ids)
        canary = DeviceUpdate.objects.get(deployment=dep, wave=0).device.device_id
        try:
            server.until(
                lambda: Deployment.objects.get(pk=dep.pk).state == "paused", "slow release paused", 90
            )
        except AssertionError:
            dep.refresh_from_db()
            print("DEBUG", dep.state, dep.state_reason, dep.gate_results)
            print("DEBUG", list(DeviceUpdate.objects.filter(deployment=dep).values_list("state", "reason")))
            raise
        server.settle(2.0)
        dep.refresh_from_db()
        reason = dep.gate_results[0]["reason"]
        assert reason["metric"] == "latency_p50_ms" and reason["wave"] == 0
        assert reason["change"] > GATES["latency_p50_regression"]
        assert reason["cohorts"]["candidate"]["version"] == "3.0.0"
        assert reason["cohorts"]["candidate"]["devices"] == 1 and reason["cohorts"]["control"]["devices"] == 2
        assert dep.state_reason.startswith("gate_failed: latency_p50_ms on wave 0 (canary)")
        states = dict(DeviceUpdate.objects.filter(deployment=dep).values_list("device__device_id", "state"))
        assert states.pop(canary) == "succeeded"
        assert set(states.values()) == {"pending"}  # the rest never got the slow build
        offered = {o.deployment_id for o in server.offers}
        assert dep.deployment_id in offered
        versions = {a.device_id: a.ota.active_release().version for a in agents}
        assert versions.pop(canary) == "3.0.0" and set(versions.values()) == {"2.0.0"}
    finally:
        for agent in agents:
            agent.close()


SHADOW_GATES = {"min_devices": 1, "min_frames": 5, "min_detections": 10, "shadow_recall_min": 0.8}


def test_real_agents_catch_a_miswired_build_in_shadow_and_activate_a_good_one(
    live, ota_keys, make_token, mqtt_probe, embedded_broker, fleet_pki, tmp_path
):
    from edge.agent.runner import Agent
    from ota.models import Deployment, DeviceUpdate
    from ota.services import deployment_abort

    ids, configs = _cameras(live, make_token, ota_keys, tmp_path)
    probe = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert probe.start(), probe.failure
    server = FleetServer(probe, ids)
    agents = {c.state_dir.name: Agent(c) for c in configs}
    by_id = dict(zip(ids, agents.values(), strict=True))
    for agent in agents.values():
        agent.start()
    shadow = {"share": 0.5, "cpu_budget_pct": 50, "soak_s": 0}
    try:
        # 1. The real model with the wrong pre-processing baked in: verified, stored in the canary's
        # B slot, run in shadow; it misses most of what the active model sees, so the gate stops it.
        bad = release("2.0.0", miswired_model(0.1))
        dep = _deploy(bad, ids, gates=SHADOW_GATES, shadow=shadow)
        canary = DeviceUpdate.objects.get(deployment=dep, wave=0).device.device_id
        server.until(lambda: Deployment.objects.get(pk=dep.pk).state == "paused", "miswired build paused", 90)
        dep.refresh_from_db()
        reason = dep.gate_results[0]["reason"]
        assert reason["metric"] == "shadow_recall" and reason["candidate"] < SHADOW_GATES["shadow_recall_min"]
        assert reason["cohorts"]["candidate"]["version"] == "2.0.0"
        assert reason["cohorts"]["candidate"]["reference"] >= SHADOW_GATES["min_detections"]
        assert dep.state_reason.startswith("gate_failed: shadow_recall on wave 0 (canary)")
        agent = by_id[canary]
        assert agent.ota.active_release() is None  # never activated: the default model still runs
        stored = agent.ota.state.slots[agent.ota.state.other(agent.ota.state.active)]
        assert (stored.status, stored.version, stored.sha256) == ("ready", "2.0.0", bad.artifact.sha256)
        assert server.report_states(dep.deployment_id) == ["downloading", "verifying", "shadow"]
        assert agent.camera.shadow is not None
        states = dict(DeviceUpdate.objects.filter(deployment=dep).values_list("device__device_id", "state"))
        assert states.pop(canary) == "shadow" and set(states.values()) == {"pending"}
        # The operator aborts: the offer is cleared and the canary stops shadowing.
        from fleet.audit import Actor

        deployment_abort(actor=Actor.system("test"), deployment=dep)
        server.until(lambda: agent.camera.shadow is None, "shadow run stopped after the abort", 20)

        # 2. The real model, in shadow on every wave: it agrees, each wave is activated from the slot
        # it verified in shadow (no second download) and the rollout completes.
        good = release("3.0.0", default_model().read_bytes())
        dep = _deploy(good, ids, gates=SHADOW_GATES, shadow=shadow)
        server.until(
            lambda: Deployment.objects.get(pk=dep.pk).state == "completed", "good build completed", 120
        )
        dep.refresh_from_db()
        assert [g["state"] for g in dep.gate_results] == ["passed", "passed"]
        assert all(g["mode"] == "shadow" for g in dep.gate_results)
        recall = dep.gate_results[0]["cohorts"][0]["candidate"]["recall"]
        assert recall >= SHADOW_GATES["shadow_recall_min"]
        assert set(DeviceUpdate.objects.filter(deployment=dep).values_list("state", flat=True)) == {
            "succeeded"
        }
        assert all(a.ota.active_release().version == "3.0.0" for a in agents.values())
        assert all(a.camera.shadow is None for a in agents.values())
        states = [r.state for r in server.reports if r.deployment_id == dep.deployment_id]
        # Each camera downloaded once (in shadow), then switched to the stored slot.
        assert states.count("succeeded") == 3 and states.count("shadow") == 3
        assert states.count("verifying") == 3
    finally:
        for agent in agents.values():
            agent.close()
