# ruff: noqa: F811 - pytest fixtures imported from live_fixtures
"""OTA end to end through the real edge agent: server deployment -> down/ota -> agent -> up/ota -> server.

The agent (edge.agent.runner.Agent, what `python -m edge run` starts) enrolls through the live
server's POST /api/v1/enroll/, connects to the embedded broker and pins the OTA root key of the
server's key list. The server stores real ONNX artifacts (the default NanoDet-g model as `make model`
builds it, and a model that breaks the detector's I/O convention) in the local object store, signs
releases and starts deployments; the agent downloads each artifact from the
live server's presigned URL, installs it into its inactive slot, health-checks it with ONNX
Runtime and its own detector, and commits or reverts by itself. A fleet-ingest subscriber feeds what the agent says
(up/status, up/ota) through the ingest's own batch service, and the test ticks the rollout engine.

Skipped under `-p no:django` (it needs pytest-django's live server and database).
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from agent_helpers import agent_config, running

from edge.enroll import enroll
from edge.vision.models import COCO_LABELS
from protocol import topics
from protocol.messages import decode_down, decode_up
from tests.edge.detector_models import default_model, heatmap_model

if "pytest_django.plugin" not in sys.modules:  # run with -p no:django
    pytest.skip("needs pytest-django's live server and database", allow_module_level=True)

from django.utils import timezone
from live_fixtures import hardware_model, identity_pki, live_enroll, make_token, unthrottled  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "person-det"
HARDWARE = "cam-x1"
GRACE_S = 0.5  # the agent's "no crash for a grace period" before it commits
DEADLINE_S = 25.0


class Server:
    """The server's side: fleet.mqtt publishes offers; an ingest subscriber (fleet-ingest, as `manage.py
    ingest` connects) feeds what the agent says to the ingest's batch service, then the engine ticks.

    The subscriber also watches the device's down/ota, to count the offers the server sent.
    """

    def __init__(self, probe, device_id: str) -> None:
        self.probe = probe
        for kind in ("status", "ota"):
            probe.subscribe(topics.up(device_id, kind))
        probe.subscribe(topics.down(device_id, "ota"))
        self.offers: list = []  # decoded down/ota offers, as published
        self.reports: list = []  # every decoded up/ota the agent sent, in arrival order
        self.statuses: list = []
        self.up: list[tuple[str, str, Any]] = []  # (device id, kind, decoded message) of every up/ message

    def pump(self) -> None:
        from ota.services import tick
        from telemetry.ingest.services import ingest_batch
        from telemetry.ingest.types import RawMessage

        batch = []
        for m in self.probe.received(timeout=0.05):
            t = topics.parse(m.topic)
            if t.direction == "down":
                if m.payload:
                    self.offers.append(decode_down("ota", m.payload))
                continue
            if m.payload:
                msg = decode_up(t.kind, m.payload)
                self.up.append((t.device_id, t.kind, msg))
                if t.kind in ("ota", "status"):
                    (self.reports if t.kind == "ota" else self.statuses).append(msg)
                batch.append(RawMessage(topic=m.topic, payload=m.payload, received_at=timezone.now()))
        if batch:
            result = ingest_batch(messages=batch)
            assert not result.dead_letters, result
        tick()

    def until(self, predicate: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if predicate():
                return
        raise AssertionError(f"not within {timeout} s: {what}; reports {self.report_states()}")

    def settle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump()

    def report_states(self, deployment_id: str | None = None) -> list[str]:
        """States the agent reported (for one deployment), repeated progress reports collapsed."""
        out: list[str] = []
        for r in self.reports:
            if deployment_id in (None, r.deployment_id) and (not out or out[-1] != r.state):
                out.append(r.state)
        return out


@pytest.fixture
def live(live_enroll, embedded_broker, fleet_pki, settings, tmp_path):
    """The Django side wired to the embedded broker and a local object store served by the live server."""
    from fleet import mqtt

    url = live_enroll
    # The server's own MQTT client (offers on down/ota) as fleet-ingest; amqtt speaks 3.1.1 only.
    settings.MQTT_HOST, settings.MQTT_PORT, settings.MQTT_TLS = (
        embedded_broker.host,
        embedded_broker.port,
        True,
    )
    settings.MQTT_PROTOCOL = "3.1.1"
    settings.MQTT_CA_FILE = fleet_pki.ca_file
    settings.MQTT_CLIENT_CERT, settings.MQTT_CLIENT_KEY = (
        fleet_pki.ingest.cert_file,
        fleet_pki.ingest.key_file,
    )
    # Artifacts in MEDIA_ROOT; presigned URLs point at the live server's /files/ view.
    settings.STORAGE_BACKEND, settings.MEDIA_ROOT, settings.PUBLIC_URL = "local", tmp_path / "media", url
    mqtt.close_publisher()
    yield url
    mqtt.close_publisher()


@pytest.fixture
def ota_keys(db, tmp_path) -> str:
    """OTA keys as `manage.py ota_keys init` makes them; returns the root public key devices pin."""
    from fleet.audit import Actor
    from ota.models import KeyRole, SigningKey
    from ota.services import keys_init

    offline = tmp_path / "offline"  # the root key's USB stick
    offline.mkdir()
    keys_init(actor=Actor.system("test"), root_out=offline / "root.pem")
    return SigningKey.objects.get(role=KeyRole.ROOT).public_key


def release(version: str, data: bytes):
    from devices.models import HardwareModel
    from fleet.audit import Actor
    from ota.services import artifact_create, release_create

    actor = Actor.system("test")
    artifact = artifact_create(
        actor=actor,
        name=MODEL,
        version=version,
        file=io.BytesIO(data),
        hardware_models=[HardwareModel.objects.get(name=HARDWARE)],
    )
    return release_create(actor=actor, artifact=artifact, hardware_models=[HARDWARE], min_agent_version="1.0")


def deploy(rel, device_id: str):
    from fleet.audit import Actor
    from ota.services import deployment_create, deployment_start

    actor = Actor.system("test")
    deployment = deployment_create(
        actor=actor,
        data={
            "name": f"e2e {rel.manifest['signed']['version']}",
            "release": rel,
            "targets": {"devices": [device_id]},
            "waves": [100],
            "device_timeout_s": 120,
        },
    )
    return deployment_start(actor=actor, deployment=deployment)


def test_real_agent_installs_a_deployed_model_then_reverts_a_bad_one_by_itself(
    live, ota_keys, make_token, mqtt_probe, embedded_broker, fleet_pki, tmp_path
):
    from devices.models import Device
    from ota.models import Deployment, DeviceUpdate

    _, key = make_token(max_uses=1)
    identity = enroll(
        server_url=live, token=key, state_dir=tmp_path / "cam", serial="SN-OTA-1", hardware_model=HARDWARE
    )
    device_id = identity.device_id
    probe = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert probe.start(), probe.failure
    server = Server(probe, device_id)
    config = agent_config(
        tmp_path / "cam", hardware_model=HARDWARE, ota_root_key=ota_keys, ota_grace_s=GRACE_S
    )

    good, bad = default_model().read_bytes(), heatmap_model()
    with running(config) as agent:
        # Birth message through the ingest: the registry sees the device online, with no model yet.
        server.until(
            lambda: Device.objects.get(device_id=device_id).last_seen_at is not None, "birth ingested"
        )
        assert agent.ota is not None and agent.ota.active_release() is None

        # 1. A good model: verified, downloaded from the live server, installed, health-checked, committed.
        first = release("1.0.0", good)
        assert first.artifact.labels == list(COCO_LABELS)  # the build step's JSON labels metadata
        dep1 = deploy(first, device_id)
        update1 = DeviceUpdate.objects.get(deployment=dep1)
        server.until(
            lambda: (
                Deployment.objects.get(pk=dep1.pk).state == "completed"
                and Device.objects.get(device_id=device_id).model_version == f"{MODEL}@1.0.0"
            ),
            "first deployment completed and the registry shows the new model",
        )
        update1.refresh_from_db()
        assert (update1.state, update1.reason) == ("succeeded", "")
        # The bytes came from the live server: the offer's presigned URL, served by /files/.
        assert server.offers[0].artifact_url.startswith(f"{live}/files/o/")
        assert server.report_states(dep1.deployment_id) == [
            "downloading",
            "verifying",
            "installing",
            "health_check",
            "succeeded",
        ]
        assert all(r.serial == first.serial and r.model == MODEL for r in server.reports)
        active = agent.ota.active_release()
        assert (active.serial, active.sha256, active.version) == (
            first.serial,
            first.artifact.sha256,
            "1.0.0",
        )
        assert hashlib.sha256(agent.ota.active_model_path().read_bytes()).hexdigest() == first.artifact.sha256
        assert not agent.ota.in_trial() and agent.ota.installed_serial == first.serial
        good_slot = agent.ota.state.active

        # 2. A model that loads and runs but has the wrong outputs for the detector (a heatmap): the
        # agent tries it, its detector refuses it, and it reverts to the first by itself.
        second = release("2.0.0", bad)
        assert second.serial > first.serial
        statuses_before = len(server.statuses)
        dep2 = deploy(second, device_id)
        update2 = DeviceUpdate.objects.get(deployment=dep2)
        assert update2.from_release_id == first.pk  # what the device ran before, per the registry
        server.until(
            lambda: Deployment.objects.get(pk=dep2.pk).state == "completed", "second deployment completed"
        )
        server.settle(1.0)  # anything late (a re-sent offer, a second answer) would land now
        update2.refresh_from_db()
        assert update2.state == "rolled_back"
        assert update2.reason.startswith("health_check_failed: model_contract"), update2.reason
        assert server.report_states(dep2.deployment_id) == [
            "downloading",
            "verifying",
            "installing",
            "health_check",
            "rolled_back",
        ]
        answers = [
            r for r in server.reports if r.deployment_id == dep2.deployment_id and r.state == "rolled_back"
        ]
        assert [(r.reason, r.serial) for r in answers] == [(update2.reason, second.serial)]
        # One offer, one answer: the revert left the model as it was, so the agent sent no status
        # refresh, which the server would take for a birth and answer by offering the release again.
        assert [o.deployment_id for o in server.offers].count(dep2.deployment_id) == 1
        assert len(server.statuses) == statuses_before
        # The agent is back on the first model, committed; the tried slot is wiped.
        assert agent.ota.state.active == good_slot and not agent.ota.in_trial()
        assert agent.ota.active_release().serial == first.serial
        assert hashlib.sha256(agent.ota.active_model_path().read_bytes()).hexdigest() == first.artifact.sha256
        assert agent.ota.installed_serial == first.serial  # the floor is what was committed, not tried
        assert agent.ota.state.slots[agent.ota.state.other(good_slot)].status == "empty"
        assert agent.ota.state.rolled_back.serial == second.serial
        assert Device.objects.get(device_id=device_id).model_version == f"{MODEL}@1.0.0"

    # 3. Restart (a reboot): the retained offer comes back; the agent answers from its records
    # (rolled_back again, same reason) without trying the bad model again, and stays on the first.
    # (The embedded broker may hand the retained offer over twice on a resumed session: each copy
    # gets the same answer.)
    reports_before, offers_before = len(server.reports), len(server.offers)
    with running(config) as agent:
        server.until(
            lambda: len(server.reports) > reports_before, "the retained offer answered after restart"
        )
        server.settle(1.0)
        again = {(r.deployment_id, r.state, r.reason) for r in server.reports[reports_before:]}
        assert again == {(dep2.deployment_id, "rolled_back", update2.reason)}
        assert agent.ota.active_release().serial == first.serial and not agent.ota.in_trial()
        assert server.statuses[-1].model_version == f"{MODEL}@1.0.0"  # the birth names the running model
    assert len(server.offers) == offers_before  # the birth re-sent nothing: no update is unfinished
    update2.refresh_from_db()
    assert update2.state == "rolled_back"  # terminal stays terminal
