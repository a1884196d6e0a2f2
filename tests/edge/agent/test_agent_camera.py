"""The camera thread on bad input: a corrupt or truncated video, a source that goes away and comes
back, a model the detector refuses. Each is a fault in the camera's record (which the agent's
status carries); the thread keeps running and falls back to the previous model."""

import shutil
import time
from pathlib import Path

import pytest
from agent_helpers import agent_config, next_message, running

from edge.agent.camera import Camera
from tests.edge.detector_models import default_model, heatmap_model, tiny_model

CUT = "tests/footage/bottle-hand.mp4"


def _camera(source, **kwargs) -> Camera:
    return Camera(
        source=str(source),
        camera="cam0",
        detection={},
        detector="onnx",
        model_path=None,
        default_model=default_model(),
        on_events=lambda events: None,
        realtime=False,
        **kwargs,
    )


def _until(predicate, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_corrupt_video_is_a_camera_fault_and_the_thread_keeps_trying(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    cam = _camera(bad)
    cam.start()
    try:
        assert _until(lambda: "camera" in cam.faults)
        assert cam.faults["camera"].startswith("source_unreadable") and cam._thread.is_alive()
    finally:
        cam.stop()


def test_a_truncated_video_is_played_as_far_as_it_goes(tmp_path):
    cut = tmp_path / "cut.mp4"
    data = Path(CUT).read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 5])
    cam = _camera(cut, loop_source=False)
    cam.start()
    try:
        assert _until(lambda: cam.frames > 0)
        assert _until(lambda: not cam._thread.is_alive())  # to its end, then done: no crash
    finally:
        cam.stop()
    assert cam.faults == {}


def test_a_source_that_goes_away_is_a_fault_until_it_comes_back(tmp_path):
    clip = tmp_path / "clip.mp4"
    shutil.copy(CUT, clip)
    cam = _camera(clip)
    cam.start()
    try:
        assert _until(lambda: cam.frames > 0)
        clip.unlink()  # unplugged: the next open fails
        assert _until(lambda: "camera" in cam.faults)
        assert cam.faults["camera"].startswith("source_missing")
        shutil.copy(CUT, clip)
        seen = cam.frames
        assert _until(lambda: "camera" not in cam.faults and cam.frames > seen)
    finally:
        cam.stop()


def test_a_model_the_detector_refuses_keeps_the_previous_model_running(tmp_path):
    wrong_outputs, wrong_input = tmp_path / "heatmap.onnx", tmp_path / "input.onnx"
    wrong_outputs.write_bytes(heatmap_model())
    wrong_input.write_bytes(tiny_model(input_shape=(1, 1, 64, 64)))
    cam = _camera(CUT)
    cam._new_pipeline()
    assert cam.detector_model == default_model() and cam.faults == {}
    for bad in (wrong_outputs, wrong_input, tmp_path / "missing.onnx"):
        cam.set_model(bad)
        cam._new_pipeline()
        assert cam.detector_model == default_model()  # the previous model still runs
        assert cam.detector.name == "onnx"
        assert "model_" in cam.faults["model"] and "running nanodet-g.onnx instead" in cam.faults["model"]
    cam.set_model(None)  # back to the default model: the fault clears
    cam._new_pipeline()
    assert cam.faults == {}


def test_the_agents_status_names_its_faults_and_it_keeps_its_queue(device, tmp_path):
    """A corrupt video on a live agent: the retained status says what is wrong; the agent stays up,
    and what it had queued is still delivered (nothing is lost to bad input)."""
    _, server = device
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    config = agent_config(tmp_path, source=str(bad))
    with running(config) as agent:
        _, status, _ = next_message(server, kind="status", where=lambda m: m.faults, timeout=20)
        assert status.state == "online" and status.faults[0].startswith("camera: source_unreadable")
        agent.outbox.telemetry([{"ts": time.time(), "cpu_pct": 1.0, "mem_pct": 2.0}])
        assert next_message(server, kind="telemetry", timeout=20)
        assert agent.camera._thread.is_alive()


def test_agent_config_defaults_to_the_onnx_detector_and_resolves_its_model_path(tmp_path):
    from edge.agent.config import AgentConfig, load_config
    from edge.agent.errors import AgentError

    conf = tmp_path / "agent.toml"
    conf.write_text('state_dir = "state"\nmodel_path = "models/nanodet-g.onnx"\ndetector_threads = 2\n')
    cfg = load_config(conf)
    assert cfg.detector == "onnx" and cfg.detector_threads == 2
    assert cfg.model_path == tmp_path / "models" / "nanodet-g.onnx"  # relative to the file
    assert AgentConfig(state_dir=tmp_path).model_path is None  # None: edge.vision.models.default_model_path()
    with pytest.raises(AgentError):
        AgentConfig(state_dir=tmp_path, detector_threads=0)
