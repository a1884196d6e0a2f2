# ruff: noqa: F811 - pytest fixtures imported from live_fixtures and the OTA live test
"""Quality gates end to end: three cameras, each a real `python -m edge run` process running the real
detector (NanoDet-g) on real footage, send their model quality in up/telemetry; the server gates a
canary wave on it.

A release of the same model passes its gate (the canary against the two cameras still on the agent's
default model), after the gate waited while the canary had too few frames; it completes. A slow build
of it (the real model plus work that changes no output, made here) installs fine and passes the
device's health check, but the latency gate catches it on the canary: the rollout pauses with the
reason and the other cameras never get it. In shadow mode a miswired build is caught on the canary
and never activated, and a good one is activated from the slot it was verified in.

What the test knows of a camera is what an operator or a firmware engineer sees from outside its
process: what it publishes (up/status, up/ota, up/telemetry), its log, and its OTA state on disk.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import pytest
from agent_helpers import agent_config

from edge.enroll import enroll
from protocol import topics
from protocol.up import ModelQuality, Telemetry
from tests.edge.agent.agent_process import REPO, AgentProcess, agent_processes
from tests.edge.detector_models import default_model, miswired_model, slow_model

if "pytest_django.plugin" not in sys.modules:  # run with -p no:django
    pytest.skip("needs pytest-django's live server and database", allow_module_level=True)

from live_fixtures import hardware_model, identity_pki, live_enroll, make_token, unthrottled  # noqa: F401
from test_agent_ota_live import DEADLINE_S, HARDWARE, MODEL, Server, live, ota_keys, release  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

FOOTAGE = REPO / "tests/footage/store-aisle.mp4"  # three shoppers in an aisle, looped
DEFAULT = ("nanodet-g", "default")  # how quality telemetry names the agent's own model
# The median, not p95: three agents and the test share a small machine, and a tail under CPU contention
# says more about the neighbours than about the model.
GATES = {"min_devices": 1, "min_frames": 15, "latency_p50_regression": 0.5, "fps_drop": 0.9}


class FleetServer(Server):
    """The OTA live test's server side, for several cameras and their telemetry too; each pump first
    checks that every agent process still runs (a dead camera fails the test at once, with its log)."""

    def __init__(self, probe, device_ids: list[str], agents: list[AgentProcess]) -> None:
        super().__init__(probe, device_ids[0])
        for device_id in device_ids[1:]:
            for kind in ("status", "ota"):
                probe.subscribe(topics.up(device_id, kind))
            probe.subscribe(topics.down(device_id, "ota"))
        for device_id in device_ids:
            probe.subscribe(topics.up(device_id, "telemetry"))
        self.agents = agents

    def pump(self) -> None:
        for agent in self.agents:
            agent.check_running()
        super().pump()

    def until(self, predicate, what: str, timeout: float = DEADLINE_S) -> None:
        try:
            super().until(predicate, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.rollouts()}") from None

    def rollouts(self) -> str:
        """What the server knows of each deployment, for a failure message: state, gates, devices, and
        the shadow windows each camera sent (a rollout that hangs says where)."""
        from ota.models import Deployment, DeviceUpdate

        lines = []
        for d in Deployment.objects.order_by("pk"):
            lines.append(
                f"{d.deployment_id} {d.state} ({d.state_reason}) wave {d.current_wave}, "
                f"shadow activated {d.shadow_activated_wave}, wave done at {d.wave_done_at}"
            )
            lines += [f"  gate {g}" for g in d.gate_results]
            lines += [
                f"  {device} wave {wave}: {state} {reason}"
                for device, wave, state, reason in DeviceUpdate.objects.filter(deployment=d)
                .order_by("wave", "device_id")
                .values_list("device__device_id", "wave", "state", "reason")
            ]
        for device_id, _, m in self.up:
            for q in getattr(m, "quality", ()):
                if q.role == "shadow":
                    lines.append(
                        f"  {device_id} shadow {q.version}: {q.frames} frames, {q.matched}/{q.reference}"
                    )
        return "\n".join(lines)

    def mark(self) -> int:
        """A point in the up/ stream, for what a device said after it."""
        return len(self.up)

    def telemetry(self, device_id: str, since: int = 0) -> list[Telemetry]:
        return [m for d, kind, m in self.up[since:] if d == device_id and kind == "telemetry"]

    def windows(self, device_id: str, role: str, since: int = 0) -> list[ModelQuality]:
        return [q for t in self.telemetry(device_id, since) for q in t.quality if q.role == role]

    def model_version(self, device_id: str) -> str | None:
        """What the device's last up/status says it runs ("model@version"; None: no OTA release)."""
        for d, kind, m in reversed(self.up):
            if d == device_id and kind == "status":
                return m.model_version
        raise AssertionError(f"no up/status from {device_id}")


def shadow_stopped(server: FleetServer, device_id: str, since: int, active: tuple[str, str]) -> bool:
    """The device's telemetry since `since` ends with messages that carry no shadow window and, together,
    at least 3 frames of the `active` model. A shadow run takes every 2nd frame of the active model
    (share 0.5) right after it, so a run still going would show in those messages."""
    frames = 0
    for t in reversed(server.telemetry(device_id, since)):
        if any(q.role == "shadow" for q in t.quality):
            return False
        frames += sum(q.frames for q in t.quality if q.role == "active" and (q.model, q.version) == active)
        if frames >= 3:
            return True
    return False


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


def _cameras(live, make_token, ota_keys, tmp_path, n: int = 3) -> tuple[list[str], list[AgentProcess]]:
    """n cameras enrolled through the live server, each with its agent's config file on the footage."""
    _, key = make_token(max_uses=n)
    ids, agents = [], []
    for i in range(n):
        state = tmp_path / f"cam{i}"
        ids.append(
            enroll(
                server_url=live, token=key, state_dir=state, serial=f"SN-GATE-{i}", hardware_model=HARDWARE
            ).device_id
        )
        agent = AgentProcess(state)
        agent.write_config(
            agent_config(
                state,
                hardware_model=HARDWARE,
                ota_root_key=ota_keys,
                ota_grace_s=0.5,
                # Room for the slow build's self-test on a busy test machine: the gate is what
                # must catch it here, not the device's own budget.
                ota_health_budget_ms=10_000,
                source=str(FOOTAGE),
                detection={"sample_fps": 1},
                telemetry_sample_s=1.0,
                telemetry_interval_s=2.0,
            )
        )
        agents.append(agent)
    return ids, agents


def _short(cohort: dict[str, Any]) -> str:
    """What a gate waiting on too few samples says of this cohort."""
    out = []
    need_devices, need_frames = GATES["min_devices"], GATES["min_frames"]
    for side in ("candidate", "control"):
        devices, frames = cohort[side]["devices"], cohort[side]["frames"]
        if devices < need_devices:
            out.append(f"{side}: {devices} of {need_devices} device(s) reporting")
        elif frames < need_frames:
            out.append(f"{side}: {frames} of {need_frames} frames")
    return "; ".join(out)


class OnDisk(NamedTuple):
    """An agent's A/B slots as its state.json says."""

    active: str | None  # the version in the active slot; None: no OTA release, the default model runs
    trial: bool  # activated but not yet committed
    versions: set[str | None]  # in either slot


def _on_disk(agent: AgentProcess) -> OnDisk:
    state = agent.ota_state()
    assert state is not None, f"{agent.name} keeps no OTA state"
    return OnDisk(
        active=state.slots[state.active].version if state.active is not None else None,
        trial=state.trial is not None,
        versions={s.version for s in state.slots.values()},
    )


def test_real_agents_pass_a_good_release_and_stop_a_slow_one_at_the_canary(
    live, ota_keys, make_token, mqtt_probe, embedded_broker, fleet_pki, tmp_path
):
    from ota.models import Deployment, DeviceUpdate
    from telemetry.models import ModelQualitySample

    ids, agents = _cameras(live, make_token, ota_keys, tmp_path)
    by_id = dict(zip(ids, agents, strict=True))
    probe = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert probe.start(), probe.failure
    server = FleetServer(probe, ids, agents)
    with agent_processes(agents):
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
            timeout=120,
        )

        # 1. The same model as a release: the canary's latency and fps match the control's; it goes on.
        good = release("2.0.0", default_model().read_bytes())
        dep = _deploy(good, ids)
        seen: list[tuple[str, dict[str, Any], int]] = []  # (state, canary gate, cameras told beyond it)

        def completed() -> bool:
            d = Deployment.objects.get(pk=dep.pk)
            if d.gate_results:
                told = DeviceUpdate.objects.filter(deployment=d, wave__gt=0).exclude(state="pending").count()
                seen.append((d.state, d.gate_results[0], told))
            return d.state == "completed"

        server.until(completed, "good release completed", 120)
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
        # Too few samples kept the gate waiting, not passing, and the other cameras back: whenever the
        # canary (or the control, whose cameras started with the test) had fewer than min_frames, the
        # gate said so with the counts. It did wait on the canary's first frames on the release.
        waiting = [(state, g, told) for state, g, told in seen if g["state"] == "waiting" and g["cohorts"]]
        first_frames = [
            g for _, g, _ in waiting if 0 < g["cohorts"][0]["candidate"]["frames"] < GATES["min_frames"]
        ]
        assert first_frames, {g["state"] for _, g, _ in seen}
        for state, g, told in waiting:
            (c,) = g["cohorts"]
            assert state == "running" and told == 0 and c["state"] == "waiting"
            assert c["control"]["devices"] == 2
            assert c["checks"] == [{"metric": "sample", "state": "waiting", "detail": _short(c)}]
        # Every camera says it runs the release, and runs it from a committed slot.
        server.until(
            lambda: all(server.model_version(d) == f"{MODEL}@2.0.0" for d in ids), "every camera on 2.0.0", 30
        )
        assert [_on_disk(a)[:2] for a in agents] == [("2.0.0", False)] * 3  # committed, no trial left

        # 2. A slow build: installed and healthy on the canary, then caught by the latency gate.
        slow = release("3.0.0", slow_model(matmuls=60))
        dep = _deploy(slow, ids)
        canary = DeviceUpdate.objects.get(deployment=dep, wave=0).device.device_id
        server.until(lambda: Deployment.objects.get(pk=dep.pk).state == "paused", "slow release paused", 120)
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
        server.until(lambda: server.model_version(canary) == f"{MODEL}@3.0.0", "the canary on 3.0.0", 30)
        assert {d: server.model_version(d) for d in ids if d != canary} == {
            d: f"{MODEL}@2.0.0" for d in ids if d != canary
        }
        assert _on_disk(by_id[canary])[:2] == ("3.0.0", False)
        for d in ids:
            if d != canary:  # still on 2.0.0, and the slow build never reached either slot
                active, trial, stored = _on_disk(by_id[d])
                assert (active, trial) == ("2.0.0", False) and "3.0.0" not in stored


SHADOW_GATES = {"min_devices": 1, "min_frames": 5, "min_detections": 10, "shadow_recall_min": 0.8}


def test_real_agents_catch_a_miswired_build_in_shadow_and_activate_a_good_one(
    live, ota_keys, make_token, mqtt_probe, embedded_broker, fleet_pki, tmp_path
):
    from fleet.audit import Actor
    from ota.models import Deployment, DeviceUpdate
    from ota.services import deployment_abort

    ids, agents = _cameras(live, make_token, ota_keys, tmp_path)
    by_id = dict(zip(ids, agents, strict=True))
    probe = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert probe.start(), probe.failure
    server = FleetServer(probe, ids, agents)
    shadow = {"share": 0.5, "cpu_budget_pct": 50, "soak_s": 0}
    with agent_processes(agents):
        # 1. The real model with the wrong pre-processing baked in: verified, stored in the canary's
        # B slot, run in shadow; it misses most of what the active model sees, so the gate stops it.
        bad = release("2.0.0", miswired_model(0.1))
        dep = _deploy(bad, ids, gates=SHADOW_GATES, shadow=shadow)
        canary = DeviceUpdate.objects.get(deployment=dep, wave=0).device.device_id
        server.until(
            lambda: Deployment.objects.get(pk=dep.pk).state == "paused", "miswired build paused", 120
        )
        dep.refresh_from_db()
        reason = dep.gate_results[0]["reason"]
        assert reason["metric"] == "shadow_recall" and reason["candidate"] < SHADOW_GATES["shadow_recall_min"]
        assert reason["cohorts"]["candidate"]["version"] == "2.0.0"
        assert reason["cohorts"]["candidate"]["reference"] >= SHADOW_GATES["min_detections"]
        assert dep.state_reason.startswith("gate_failed: shadow_recall on wave 0 (canary)")
        assert server.report_states(dep.deployment_id) == ["downloading", "verifying", "shadow"]
        states = dict(DeviceUpdate.objects.filter(deployment=dep).values_list("device__device_id", "state"))
        assert states.pop(canary) == "shadow" and set(states.values()) == {"pending"}
        # Never activated: no OTA release active on the canary, the candidate verified in the other slot.
        state = by_id[canary].ota_state()
        assert state is not None and state.active is None and state.trial is None
        stored = state.slots[state.other(state.active)]
        assert (stored.status, stored.version, stored.sha256) == ("ready", "2.0.0", bad.artifact.sha256)
        assert server.model_version(canary) is None
        # The canary ran it in shadow, and only the canary.
        assert {(q.model, q.version) for q in server.windows(canary, "shadow")} == {(MODEL, "2.0.0")}
        assert not [q for d in ids if d != canary for q in server.windows(d, "shadow")]

        # The operator aborts: the offer is cleared and the canary stops shadowing, on its default model.
        aborted = server.mark()
        deployment_abort(actor=Actor.system("test"), deployment=dep)
        server.until(
            lambda: shadow_stopped(server, canary, aborted, DEFAULT), "shadow run stopped after the abort", 30
        )
        assert {(q.model, q.version) for d in ids for q in server.windows(d, "active")} == {DEFAULT}

        # 2. The real model, in shadow on every wave: it agrees, each wave is activated from the slot
        # it verified in shadow (no second download) and the rollout completes.
        good = release("3.0.0", default_model().read_bytes())
        deployed = server.mark()
        dep = _deploy(good, ids, gates=SHADOW_GATES, shadow=shadow)
        server.until(
            lambda: Deployment.objects.get(pk=dep.pk).state == "completed", "good build completed", 150
        )
        dep.refresh_from_db()
        assert [g["state"] for g in dep.gate_results] == ["passed", "passed"]
        assert all(g["mode"] == "shadow" for g in dep.gate_results)
        recall = dep.gate_results[0]["cohorts"][0]["candidate"]["recall"]
        assert recall >= SHADOW_GATES["shadow_recall_min"]
        assert set(DeviceUpdate.objects.filter(deployment=dep).values_list("state", flat=True)) == {
            "succeeded"
        }
        states = [r.state for r in server.reports if r.deployment_id == dep.deployment_id]
        # Each camera downloaded once (in shadow), then switched to the stored slot.
        assert states.count("succeeded") == 3 and states.count("shadow") == 3
        assert states.count("verifying") == 3
        # Every camera says it runs 3.0.0, runs it (its quality windows) and shadows nothing any more.
        server.until(
            lambda: all(
                server.model_version(d) == f"{MODEL}@3.0.0"
                and shadow_stopped(server, d, deployed, (MODEL, "3.0.0"))
                for d in ids
            ),
            "every camera on 3.0.0 with its shadow run stopped",
            30,
        )
        assert [_on_disk(a)[:2] for a in agents] == [("3.0.0", False)] * 3  # committed, no trial left
