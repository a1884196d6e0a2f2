"""The edge agent as a camera runs it: its own `python -m edge run --config FILE` process.

Used by the tests that need real agent processes (the live quality gates, the production stack end to
end). What a test may know of such an agent is what an operator or a firmware engineer sees from the
outside: what it publishes, its log, and the state it keeps on disk (read here, never written).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from edge.agent.config import AgentConfig, load_config
from edge.ota.state import OtaState, StateStore

REPO = Path(__file__).resolve().parents[3]
CAMERA_FAILED = b"camera thread failed"  # edge.agent.camera logs it when its thread dies on a bug
STOP_TIMEOUT_S = 20.0  # SIGTERM to exit: the agent joins its camera (5 s) and workers (2 s each)


def config_document(config: AgentConfig) -> dict[str, Any]:
    """`config` as a config file says it: the state dir and every setting that is not the default."""
    defaults = AgentConfig(state_dir=config.state_dir)
    out: dict[str, Any] = {"state_dir": str(config.state_dir)}
    for f in fields(AgentConfig):
        value = getattr(config, f.name)
        if f.name == "state_dir" or value == getattr(defaults, f.name):
            continue
        out[f.name] = (
            str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        )
    return out


class AgentProcess:
    """One agent process on its state dir: config file and log file in it, SIGTERM then SIGKILL to stop."""

    def __init__(self, state_dir: Path, name: str | None = None) -> None:
        self.state_dir = state_dir
        self.name = name or state_dir.name
        self.proc: subprocess.Popen | None = None
        self._log_read = 0  # how far check_running has read the log

    @property
    def config_file(self) -> Path:
        return self.state_dir / "agent.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "agent.log"

    def write_config(self, config: AgentConfig | dict[str, Any]) -> None:
        """Write the config file; an AgentConfig must read back as itself (the file says what the test meant)."""
        document = config_document(config) if isinstance(config, AgentConfig) else config
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(document, indent=2))
        if isinstance(config, AgentConfig):
            assert load_config(self.config_file) == config, self.config_file.read_text()

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge", "run", "--config", str(self.config_file)],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a Ctrl-C of pytest is not its signal
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_running(self) -> None:
        """Raise with the log's tail if the process has exited, or lives on with its camera thread
        dead (a dead camera fails fast, not by timeout)."""
        if self.proc is not None and not self.running:
            raise AssertionError(f"agent {self.name} exited with {self.proc.returncode}\n{self.log_tail()}")
        if self._log_has(CAMERA_FAILED):
            raise AssertionError(f"agent {self.name}: its camera thread failed\n{self.log_tail()}")

    def _log_has(self, text: bytes) -> bool:
        """Whether the log written since the last call holds `text` (a match across the two reads too)."""
        start = max(0, self._log_read - len(text) + 1)
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(start)
                chunk = fh.read()
        except OSError:
            return False
        self._log_read = start + len(chunk)
        return text in chunk

    def terminate(self) -> None:
        """SIGTERM, as the init system stops a camera's agent."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)

    def wait_or_kill(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """The exit code after SIGTERM; a process still running after `timeout` is SIGKILLed (-9)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # its group: nothing it started outlives it
            return self.proc.wait(10)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        self.terminate()
        return self.wait_or_kill(timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError as exc:
            return f"--- {self.name}: no log ({exc})"
        return "\n".join([f"--- {self.name}: last {len(text)} lines of {self.log_file}", *text])

    def ota_state(self) -> OtaState | None:
        """The A/B slot state the agent keeps on disk (edge/ota/state.py); None before its OTA client made one."""
        store = StateStore(self.state_dir / "ota")
        return store.load() if store.exists() else None


@contextlib.contextmanager
def agent_processes(agents: Sequence[AgentProcess]) -> Iterator[Sequence[AgentProcess]]:
    """Start every agent; on the way out stop them all (SIGTERM together, SIGKILL after a timeout).

    If the block failed, each log's tail is printed (pytest shows it with the failure). If it passed,
    every agent must have stopped on SIGTERM with exit code 0, as a camera's agent stops.
    """
    failed = False
    try:
        for agent in agents:
            agent.start()
        yield agents
    except BaseException:
        failed = True
        raise
    finally:
        for agent in agents:
            agent.terminate()
        codes = {agent.name: agent.wait_or_kill() for agent in agents}
        if failed:
            for agent in agents:
                print(agent.log_tail())
    unclean = {name: code for name, code in codes.items() if code != 0}
    assert not unclean, "agents that did not stop cleanly on SIGTERM: {}\n{}".format(
        unclean, "\n".join(a.log_tail() for a in agents if a.name in unclean)
    )
