"""The helper that runs agents as processes for the live tests: a camera whose thread died fails the
test at once with the agent's log, as a dead process does, not by a timeout minutes later."""

from __future__ import annotations

import pytest

from tests.edge.agent.agent_process import CAMERA_FAILED, AgentProcess


def test_a_camera_thread_that_died_fails_the_check_with_the_log(tmp_path):
    agent = AgentProcess(tmp_path / "cam0")
    agent.check_running()  # not started, no log yet: nothing to say
    agent.state_dir.mkdir()
    agent.log_file.write_bytes(b"INFO connected\n" * 200)
    agent.check_running()
    with agent.log_file.open("ab") as fh:  # the message split across two reads of the log
        fh.write(b"ERROR " + CAMERA_FAILED[:9])
    agent.check_running()
    with agent.log_file.open("ab") as fh:
        fh.write(CAMERA_FAILED[9:] + b"\nTraceback (most recent call last):\n")
    with pytest.raises(AssertionError, match="cam0: its camera thread failed") as failure:
        agent.check_running()
    assert "Traceback" in str(failure.value)  # the log's tail comes with it
