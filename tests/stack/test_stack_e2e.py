"""The whole system on the production stack, as a deployment runs it, then under faults.

The stack is what `make stack` starts (tests/stack/conftest.py): PostgreSQL, Redis, Celery worker and
beat on RabbitMQ, Mosquitto on the generated mTLS configuration, SeaweedFS S3, gunicorn, the ingest.
Four cameras are real `python -m edge` processes: each enrolls with a token through the API, connects
with its own certificate, runs the pipeline on a synthetic street scene (OpenCV motion detector) and
keeps a log of every message the broker acknowledged (the agent's `sent_log`). The test drives the
fleet through the REST API only, as an automation script would, and reads the stack's database for
the end-to-end message count.

Story:
1. /readyz is green, Celery workers included.
2. Cameras enroll and come online; a fleet bandwidth policy reaches each of them.
3. Events arrive with thumbnails (stored in S3); an operator asks for one event's clip and it lands
   in S3 byte for byte.
4. Model 1.0.0 rolls out to every camera. Model 2.0.0 (vehicles only) goes out with two canaries: the
   one that alerts on people fails its health check (`missing_labels`) and reverts by itself, the
   other takes it; the failure threshold pauses the rollout before any other camera is told; the
   operator aborts with rollback; every camera ends on 1.0.0, and the audit log tells it in order.
5. Faults: one camera's link is cut for a minute (a TCP proxy between it and the broker); meanwhile
   the ingest and the Celery worker are SIGKILLed (the supervisor restarts them and says so) and the
   broker restarts. Afterwards nothing a camera sent is missing or counted twice: every message id in
   each camera's sent log is in the database once, every telemetry sample is one row, every event is
   there.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from edge.agent.sent_log import read as read_sent_log
from stack.config import BASE_DIR
from tests.edge.agent.agent_process import AgentProcess
from tests.edge.agent.agent_proxy import TcpProxy
from tests.edge.detector_models import default_model, tiny_model
from tests.stack.conftest import Api, E2EStack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.postgres, pytest.mark.timeout(900)]

HARDWARE = "cam-x1"
MODEL = "street-det"
OFFLINE_S = 60.0  # one camera's link is down this long


@dataclass
class Camera:
    """One camera: its `python -m edge` agent process (tests/edge/agent/agent_process.py) and state directory."""

    name: str
    state_dir: Path
    alert_labels: tuple[str, ...]
    seed: int
    device_id: str = ""
    proxy: TcpProxy | None = None  # between it and the broker, instead of the enrolled endpoint
    agent: AgentProcess = field(init=False)

    def __post_init__(self) -> None:
        self.agent = AgentProcess(self.state_dir, self.name)

    @property
    def sent_log(self) -> Path:
        return self.state_dir / "sent.jsonl"

    def enroll(self, url: str, token: str) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge",
                "enroll",
                "--server",
                url,
                "--token",
                token,
                "--state-dir",
                str(self.state_dir),
                "--serial",
                f"SN-{self.name}",
                "--hardware-model",
                HARDWARE,
            ],
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def write_config(self, root_key: str) -> None:
        config = {
            "state_dir": ".",
            # A small street scene at 5 fps: people and vehicles walk through every few seconds.
            "source": f"synthetic:seed={self.seed},width=320,height=180,fps=5,duration=20,people=4,vehicles=2",
            "detector": "builtin",
            "hardware_model": HARDWARE,
            "alert_labels": list(self.alert_labels),
            "mqtt_protocol": "5",
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 2.0,
            "keepalive_s": 10,
            "telemetry_sample_s": 2.0,
            "telemetry_interval_s": 6.0,
            "queue_min_free_mb": 0,
            "ota_root_key": root_key,
            "ota_grace_s": 1.0,
            "sent_log": "sent.jsonl",
        }
        if self.proxy is not None:
            config["mqtt_port"] = self.proxy.port
        self.agent.write_config(config)


def device(api: Api, device_id: str) -> dict:
    return api.get(f"/api/v1/devices/{device_id}/")


def status(api: Api, device_id: str) -> dict:
    return api.get(f"/api/v1/devices/{device_id}/status/")


def upload_model(api: Api, data: bytes, version: str) -> dict:
    artifact = api.post(
        "/api/v1/artifacts/",
        {"name": MODEL, "version": version, "hardware_models": HARDWARE},
        files={"file": (f"{MODEL}-{version}.onnx", data, "application/octet-stream")},
    )
    return api.post(
        "/api/v1/releases/",
        {"artifact": artifact["id"], "hardware_models": [HARDWARE], "min_agent_version": "1.0"},
    )


def deployment_state(api: Api, pk: int) -> str:
    return api.get(f"/api/v1/deployments/{pk}/")["state"]


def updates(api: Api, pk: int) -> dict[str, dict]:
    return {u["device"]: u for u in api.all(f"/api/v1/deployments/{pk}/updates/")}


@pytest.fixture(scope="module")
def cameras(fleet_stack: E2EStack, api: Api, tmp_path_factory) -> list[Camera]:
    """Four cameras enrolled with one token; one (cam-3) reaches the broker through a TCP proxy."""
    base = tmp_path_factory.mktemp("cameras")
    cams = [
        Camera("cam-0", base / "cam-0", ("person",), seed=11),  # canary that alerts on people
        Camera("cam-1", base / "cam-1", ("vehicle",), seed=12),  # canary in the car park
        Camera("cam-2", base / "cam-2", ("person",), seed=13),
        Camera("cam-3", base / "cam-3", ("person",), seed=14),
    ]
    api.post("/api/v1/hardware-models/", {"name": HARDWARE, "cpu_arch": "arm64", "ram_mb": 2048})
    token = api.post("/api/v1/enrollment-tokens/", {"name": "e2e-batch", "max_uses": len(cams)})
    enrolling = [cam.enroll(fleet_stack.url, token["key"]) for cam in cams]
    for cam, proc in zip(cams, enrolling, strict=True):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        cam.device_id = json.loads((cam.state_dir / "identity" / "identity.json").read_text())["device_id"]
    root = next(k for k in api.all("/api/v1/signing-keys/") if k["role"] == "root")["public_key"]
    cams[3].proxy = TcpProxy((fleet_stack.config.host, int(fleet_stack.env["MQTT_DEVICE_PORT"])))
    for cam in cams:
        cam.write_config(root)
        cam.agent.start()
    yield cams
    for cam in cams:
        cam.agent.stop()
    cams[3].proxy.close()


def test_the_production_stack_end_to_end(fleet_stack: E2EStack, api: Api, cameras: list[Camera]):
    stack = fleet_stack
    a, b, c, d = cameras

    # 1. Ready, every dependency named, Celery by a worker's answer.
    ready = requests.get(f"{stack.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert {name: c["status"] for name, c in checks.items()} == {
        "database": "ok",
        "celery": "ok",
        "storage": "ok",
        "broker": "ok",
    }
    assert checks["celery"]["detail"].startswith("worker worker1@")

    # 2. Every camera online with its own certificate; a fleet policy reaches each.
    for cam in cameras:
        wait_for(lambda cam=cam: status(api, cam.device_id)["online"], f"{cam.name} online", 60)
    assert len({cam.device_id for cam in cameras}) == 4
    policy = api.post(
        "/api/v1/bandwidth-policies/",
        {"name": "e2e-fleet", "max_kbps": 4000, "daily_budget_mb": 500, "detection": {"clip_keep": True}},
    )
    assert policy["scope"] == "fleet"

    def applied(cam: Camera) -> dict | None:
        try:
            saved = json.loads((cam.state_dir / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return saved if saved["config"]["bandwidth"].get("max_kbps") == 4000 else None

    for cam in cameras:
        saved = wait_for(lambda cam=cam: applied(cam), f"{cam.name} applied the fleet policy", 30)
        assert saved["config"]["bandwidth"]["daily_budget_mb"] == 500
        published = api.get(f"/api/v1/device-configs/{cam.device_id}/")
        assert (published["revision"], published["policy"]) == (saved["revision"], policy["id"])

    # 3. Events with thumbnails in S3; one event's clip, asked for, lands in S3 byte for byte.
    def ended_with_thumbnail() -> dict | None:
        for event in api.get("/api/v1/events/", device=a.device_id)["results"]:
            if event["end"] and any(m["kind"] == "snapshot" for m in event["media"]):
                return event
        return None

    event = wait_for(ended_with_thumbnail, "an ended event of cam-0 with its thumbnail", 90)
    snapshot = next(m for m in event["media"] if m["kind"] == "snapshot")
    assert snapshot["url"].startswith(stack.env["S3_ENDPOINT_URL"])  # presigned, straight from S3
    image = requests.get(snapshot["url"], timeout=10)
    assert image.status_code == 200 and hashlib.sha256(image.content).hexdigest() == snapshot["sha256"]
    assert image.content[:4] == b"RIFF" and image.content[8:12] == b"WEBP"
    command = api.post(
        "/api/v1/commands/",
        {"device": a.device_id, "name": "upload_clip", "args": {"event_id": event["event_id"]}},
    )

    def clip() -> dict | None:
        got = api.get(f"/api/v1/events/{event['id']}/")
        return next((m for m in got["media"] if m["kind"] == "clip"), None)

    media = wait_for(clip, "the asked-for clip verified", 60)
    assert api.get(f"/api/v1/commands/{command['id']}/")["state"] == "succeeded"
    video = requests.get(media["url"], timeout=10)
    assert video.status_code == 200 and len(video.content) == media["size"] > 0
    assert hashlib.sha256(video.content).hexdigest() == media["sha256"]
    assert media["content_type"] == "video/mp4"

    # 4. Model 1.0.0 everywhere.
    v1 = upload_model(api, default_model().read_bytes(), "1.0.0")
    every = [cam.device_id for cam in cameras]
    first = api.post(
        "/api/v1/deployments/",
        {"name": "street-det 1.0.0", "release": v1["id"], "targets": {"devices": every}, "waves": [100]},
    )
    api.post(f"/api/v1/deployments/{first['id']}/start/")
    wait_for(lambda: deployment_state(api, first["id"]) == "completed", "1.0.0 rolled out", 120)
    assert {u["state"] for u in updates(api, first["id"]).values()} == {"succeeded"}
    for cam in cameras:
        assert device(api, cam.device_id)["model_version"] == f"{MODEL}@1.0.0"

    # Model 2.0.0 knows vehicles only. Canaries: cam-0 (alerts on people) and cam-1 (car park).
    vehicles_only = tiny_model(labels=["car", "bus", "truck", "motorcycle"])
    v2 = upload_model(api, vehicles_only, "2.0.0")
    second = api.post(
        "/api/v1/deployments/",
        {
            "name": "street-det 2.0.0",
            "release": v2["id"],
            "targets": {"devices": every},
            "canary_devices": [a.device_id, b.device_id],
            "waves": [100],
            "pause_failure_rate": 0.5,
            "min_finished": 2,
            "device_timeout_s": 120,
        },
    )
    api.post(f"/api/v1/deployments/{second['id']}/start/")
    wait_for(lambda: deployment_state(api, second["id"]) == "paused", "the threshold paused 2.0.0", 120)
    paused = api.get(f"/api/v1/deployments/{second['id']}/")
    assert paused["state_reason"].startswith("failure rate 50% (1 of 2 finished)"), paused["state_reason"]
    by_device = updates(api, second["id"])
    assert by_device[a.device_id]["state"] == "rolled_back"
    assert by_device[a.device_id]["reason"].startswith("health_check_failed: missing_labels"), by_device
    assert by_device[b.device_id]["state"] == "succeeded"
    # Nobody outside the canary wave was told.
    assert {by_device[cam.device_id]["state"] for cam in (c, d)} == {"pending"}
    assert by_device[c.device_id]["notified_at"] is None and by_device[d.device_id]["notified_at"] is None
    # cam-0 reverted by itself: it runs 1.0.0 and remembers the release it refused.
    assert device(api, a.device_id)["model_version"] == f"{MODEL}@1.0.0"
    assert a.agent.ota_state().rolled_back.serial == v2["serial"]
    assert device(api, b.device_id)["model_version"] == f"{MODEL}@2.0.0"

    # The operator aborts with rollback: cam-1 goes back to 1.0.0 under a new, higher serial.
    aborted = api.post(
        f"/api/v1/deployments/{second['id']}/abort/",
        {"rollback": True, "reason": "canary cam-0 refused 2.0.0"},
    )
    assert aborted["state"] in ("aborted", "rolled_back")
    child = wait_for(
        lambda: next((x for x in api.all("/api/v1/deployments/") if x["rollback_of"] == second["id"]), None),
        "the rollback deployment",
        30,
    )
    wait_for(lambda: deployment_state(api, child["id"]) == "completed", "the rollback completed", 120)
    assert list(updates(api, child["id"])) == [b.device_id]
    for cam in cameras:
        assert device(api, cam.device_id)["model_version"] == f"{MODEL}@1.0.0", cam.name
    assert {u["state"] for u in updates(api, second["id"]).values()} == {
        "rolled_back",
        "succeeded",
        "cancelled",
    }

    # The audit log tells it, in order, with who did what from where.
    entries = sorted(api.all("/api/v1/audit/", action_prefix="deployment."), key=lambda e: e["id"])

    def story(pk: int) -> list[tuple[str, str, str]]:
        return [(e["action"], e["actor"], e["source"]) for e in entries if e["object_id"] == str(pk)]

    admin = stack.config.admin_user
    engine = ("ota-engine", "system")
    assert story(second["id"]) == [
        ("deployment.create", admin, "api"),
        ("deployment.start", admin, "api"),
        ("deployment.running", *engine),
        ("deployment.paused", *engine),
        ("deployment.rolled_back", admin, "api"),
    ]
    assert story(child["id"]) == [
        ("deployment.create", admin, "api"),
        ("deployment.start", admin, "api"),
        ("deployment.running", *engine),
        ("deployment.completed", *engine),
    ], story(child["id"])
    stopped = next(
        e for e in entries if e["object_id"] == str(second["id"]) and e["action"] == "deployment.rolled_back"
    )
    assert "canary cam-0 refused 2.0.0" in stopped["after"]["reason"], stopped
    actions = [e["action"] for e in sorted(api.all("/api/v1/audit/"), key=lambda e: e["id"])]
    for action in ("enrollment_token.create", "device.enroll", "command.upload_clip", "deployment.start"):
        assert action in actions, (action, sorted(set(actions)))
    assert actions.count("device.enroll") == 4

    # 5. Faults. cam-3's link goes down for a minute; meanwhile the ingest and the worker are killed
    # (the supervisor restarts them) and the broker restarts.
    proxy = d.proxy
    assert proxy is not None
    cut_at, cut_wall = time.monotonic(), time.time()
    proxy.set_up(False)
    wait_for(lambda: not status(api, d.device_id)["online"], "cam-3 seen offline (its will)", 30)
    since = time.time()
    ingest_pid = stack.stack.supervisor.kill("ingest", signal.SIGKILL)
    stack.wait_restarted("ingest", since)
    assert stack.stack.service("ingest").pid != ingest_pid
    since = time.time()
    stack.stack.supervisor.kill("worker", signal.SIGKILL)
    stack.wait_restarted("worker", since)
    # The new worker does the work: beat's rollout ticks (every OTA_TICK_S) run on it.
    worker = stack.stack.service("worker")
    wait_for(
        lambda: re.search(r"Task ota\.tasks\.rollout_tick\[[^]]+\] succeeded", worker.log_since_start()),
        "a rollout tick run by the restarted worker",
        30,
    )
    stack.stack.supervisor.restart("mosquitto")
    restarts = [line for line in stack.console.lines if "exited with signal 9 (SIGKILL): restarting" in line]
    assert [line.split()[1] for line in restarts] == ["ingest", "worker"], stack.console.lines
    time.sleep(max(0.0, OFFLINE_S - (time.monotonic() - cut_at)))
    assert not status(api, d.device_id)["online"]
    proxy.set_up(True)
    up_wall = time.time()
    wait_for(lambda: status(api, d.device_id)["online"], "cam-3 back online", 60)
    ready = requests.get(f"{stack.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text

    # Let the cameras deliver what they queued, then stop them (what they still hold is not in
    # their sent logs) and count end to end.
    def drained(cam: Camera) -> bool:
        import sqlite3

        with sqlite3.connect(f"file:{cam.state_dir / 'uplink.db'}?mode=ro", uri=True) as db:
            left = db.execute("SELECT COUNT(*) FROM uplink_item WHERE cls != 'clip'").fetchone()[0]
        return left == 0

    for cam in cameras:
        wait_for(lambda cam=cam: drained(cam), f"{cam.name} drained its queue", 60)
    for cam in cameras:
        cam.agent.stop()
    offline_samples = []
    for cam in cameras:
        sent = read_sent_log(cam.sent_log)
        ids = {line["id"] for line in sent}
        samples = sorted(ts for line in sent if line["kind"] == "telemetry" for ts in line["samples"])
        event_ids = {e[0] for line in sent if line["kind"] == "events" for e in line["events"]}
        ended = {e[0] for line in sent if line["kind"] == "events" for e in line["events"] if e[1]}
        assert samples and event_ids, (cam.name, len(sent))
        if cam is d:  # samples taken while its link was down, delivered after it came back
            offline_samples = [
                ts
                for line in sent
                if line["kind"] == "telemetry" and line["at"] >= up_wall
                for ts in line["samples"]
                if cut_wall + 1 < ts < up_wall - 1
            ]

        def stored(cam=cam, ids=ids, samples=samples, event_ids=event_ids):
            processed = {
                row[0]
                for row in stack.sql(
                    "SELECT message_id FROM telemetry_processedmessage WHERE device_id = %s", [cam.device_id]
                )
            }
            rows = stack.sql(
                "SELECT extract(epoch FROM s.ts) FROM telemetry_metricsample s "
                "JOIN devices_device d ON d.id = s.device_id WHERE d.device_id = %s",
                [cam.device_id],
            )
            events = stack.sql(
                "SELECT e.event_id, e.end IS NOT NULL FROM telemetry_event e "
                "JOIN devices_device d ON d.id = e.device_id WHERE d.device_id = %s",
                [cam.device_id],
            )
            got = (ids <= processed, len(rows) == len(samples), {e for e, _ in events} == event_ids)
            return (processed, rows, events) if all(got) else None

        found = stored()
        if found is None:
            found = wait_for(stored, f"everything {cam.name} sent is in the database", 60)
        processed, rows, events = found
        # Each message once (a unique key), each sample one row, nothing else counted as this camera's.
        assert ids <= processed
        # One row per sample; the agent rounds a sample's time to 0.1 s and the server clamps a time
        # up to 50 ms in the future to the receive time, so times match to 0.05 s.
        stored_ts = sorted(float(r[0]) for r in rows)
        assert len(stored_ts) == len(samples)
        assert all(abs(x - y) <= 0.051 for x, y in zip(stored_ts, samples, strict=True)), (stored_ts, samples)
        assert {e for e, _ in events} == event_ids
        assert ended <= {e for e, is_ended in events if is_ended}
        dead = api.get("/api/v1/dead-letters/", device_id=cam.device_id)["results"]
        assert dead == [], dead
    # cam-3 kept sampling through its minute offline (a sample every 2 s), queued, and delivered later.
    assert len(offline_samples) >= (OFFLINE_S - 10) / 2, offline_samples
