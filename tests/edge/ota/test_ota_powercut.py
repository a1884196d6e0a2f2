"""Power cut at each step of an update: the client SIGKILLs itself at a named step
(FLEET_OTA_FAULT), then a fresh client recovers. A working model must be active
afterwards, and it is the new one only if the new one passed a health check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ota_models import AGENT, HARDWARE, model_bytes

from edge.ota import MAX_TRIAL_ATTEMPTS, OnnxHealthCheck
from edge.ota.faults import FAULT_ENV, STEPS
from protocol.messages import encode
from protocol.signing import public_key_to_b64

REPO = Path(__file__).resolve().parents[3]
# Steps after which the new model is (or on recovery becomes, after a health check) the active one.
NEW_WINS = {"switched", "health_check", "grace", "committed"}


def run_cli(rig, command: list[str], fault: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    env["PYTHONPATH"] = str(REPO)
    if fault:
        env[FAULT_ENV] = fault
    args = [sys.executable, "-m", "edge.ota", "--state-dir", str(rig.state_dir), "--hardware-model", HARDWARE,
            "--agent-version", AGENT, "--root-key", public_key_to_b64(rig.root.public_key()), "--grace-s", "0",
            "--download-chunk-kib", "16", "--download-origin", "file://", *command]  # fmt: skip
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def crash_during_apply(rig, offer, step):
    path = rig.tmp / "offer.json"
    path.write_bytes(encode(offer))
    proc = run_cli(rig, ["apply", str(path)], fault=step)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc


def assert_working(client, expected: bytes):
    path = client.active_model_path()
    assert path is not None and path.read_bytes() == expected
    OnnxHealthCheck()(path)  # loads and runs: a working model
    assert not client.in_trial()


def install_v1(rig):
    with rig.client() as client:
        assert client.apply(rig.offer(model_bytes(1), serial=1)) == "succeeded"


@pytest.mark.parametrize("step", [s for s in STEPS if s != "reverting"])
def test_power_cut_at_each_step_of_a_good_update(rig, step):
    v1, v2 = model_bytes(1), model_bytes(2)
    install_v1(rig)
    rig.keylist_version = 2  # so the keylist_saved step is reached
    offer = rig.offer(v2, serial=2)
    crash_during_apply(rig, offer, step)
    partial = rig.state_dir / "downloads" / f"{offer.manifest['signed']['sha256']}.part"
    if step == "download_partial":
        assert 0 < partial.stat().st_size < len(v2)  # left for the resume below

    with rig.client() as client:
        outcome = client.recover()
        assert_working(client, v2 if step in NEW_WINS else v1)
        if step in {"switched", "health_check", "grace"}:
            assert outcome == "succeeded"  # the trial was re-checked and committed
            assert rig.states()[-2:] == ["health_check", "succeeded"]
        # The retained offer is delivered again after the restart: the update completes.
        assert client.apply(offer) == "succeeded"
        assert_working(client, v2)
        assert client.installed_serial == 2
        assert client.state.slots[client.state.other(client.state.active)].serial == 1


@pytest.mark.parametrize("step", ["switched", "health_check", "reverting"])
def test_power_cut_during_a_bad_update_keeps_the_old_model(rig, step):
    v1 = model_bytes(1)
    install_v1(rig)
    offer = rig.offer(model_bytes(3, op="Log"), serial=2)  # loads, runs, outputs NaN
    crash_during_apply(rig, offer, step)

    with rig.client() as client:
        outcome = client.recover()
        assert_working(client, v1)
        assert outcome == (None if step == "reverting" else "rolled_back")
        assert client.installed_serial == 1
        assert not any((rig.state_dir / "slots" / client.state.other(client.state.active)).iterdir())
        rig.reports.clear()
        # The redelivered offer is answered from the record, not installed again.
        assert client.apply(offer) == "rolled_back"
        assert rig.reports == [("rolled_back", "health_check_failed: bad_output", None)]
        assert_working(client, v1)


def test_model_that_keeps_killing_the_agent_is_reverted(rig):
    v1 = model_bytes(1)
    install_v1(rig)
    offer = rig.offer(model_bytes(2), serial=2)
    crash_during_apply(rig, offer, "grace")  # health check 1, then the process dies
    for _ in range(MAX_TRIAL_ATTEMPTS - 1):  # every restart re-checks, and dies again
        assert run_cli(rig, ["recover"], fault="grace").returncode == -signal.SIGKILL
    with rig.client() as client:
        assert client.recover() == "rolled_back"
        assert rig.reports[-1][:2] == ("rolled_back", "trial_crashed")
        assert_working(client, v1)


def test_first_install_power_cut_falls_back_to_the_builtin_detector(rig):
    crash_during_apply(rig, rig.offer(model_bytes(3, op="Log"), serial=1), "switched")
    with rig.client() as client:
        assert client.recover() == "rolled_back"
        assert client.active_model_path() is None
