"""A small process supervisor: start services in order, wait until each is ready, watch them, stop them all.

- `start()` starts each service in turn and waits for its readiness probe before the next one, then
  prints one line per service (name, URL or port, pid, log file). A service that does not get ready
  stops everything started so far and raises `StackError`.
- `watch()` (or `poll()` from a loop of the caller's) notices a service that exited. It never
  restarts silently: each exit is printed with its code or signal, then, with `restart="on-failure"`,
  the service is started again and waited for (at most `max_restarts` in `restart_window_s`, then the
  stack stops); with `restart="never"` the whole stack stops.
- `stop()` stops every process it started, the last started first: each service's stop signal
  (SIGTERM, or SIGKILL for servers that ignore it), then SIGKILL after `grace_s`.
- `restart(name)` and `kill(name, sig)` are what an operator (or a test) does by hand.

Children run in their own sessions, so a Ctrl-C in the terminal reaches the supervisor only, which
then stops them in order; on Linux each child also gets SIGTERM (SIGKILL: its stop signal) if the
supervisor itself dies, so nothing is left behind. (The kernel ties that to the thread that started
the child: run `watch()` on a thread that lives as long as the stack, and `stop()` before it ends.)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    pass


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, sig)

    return preexec


@dataclass
class Service:
    """One long-running process of the stack.

    `ready(service)` returns True once the process serves (it is polled until `ready_timeout_s`);
    `url` is what the start-up line shows. `before_start` runs before every (re)start (e.g. write a
    config file). `stop_signal` is sent first on stop; SIGKILL follows after `grace_s`.

    Two other kinds share the ordering: `kind="external"` is a server the stack uses but does not
    run (PostgreSQL, Redis, RabbitMQ): only `ready` is polled, and `note` (set by it) is shown;
    `kind="oneshot"` is a command that must exit 0 (migrations, keys) before the next step, whose
    output lines are shown.
    """

    name: str
    argv: list[str] | Callable[[], list[str]]
    env: dict[str, str]
    ready: Callable[[Service], bool]
    kind: str = "server"  # server | external | oneshot
    note: str = ""
    url: str = ""
    cwd: str | None = None
    log_file: Path | None = None
    stop_signal: int = signal.SIGTERM
    grace_s: float = 15.0
    ready_timeout_s: float = 60.0
    before_start: Callable[[Service], None] | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    starts: int = 0
    log_start: int = 0  # size of the log file when the current process started
    restarts: deque = field(default_factory=deque, repr=False)  # monotonic times of restarts

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_since_start(self) -> str:
        """What the current process wrote to its log so far."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as f:
            f.seek(self.log_start)
            return f.read().decode(errors="replace")

    def log_tail(self, n: int = 20) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        lines = self.log_file.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def describe_exit(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


class Supervisor:
    def __init__(
        self,
        services: list[Service],
        *,
        out: TextIO | None = None,
        restart: str = "on-failure",
        max_restarts: int = 5,
        restart_window_s: float = 60.0,
        prefix: str = "stack",
    ) -> None:
        if restart not in ("on-failure", "never"):
            raise ValueError(f"restart must be on-failure or never, not {restart!r}")
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self.services = services
        self.out = out or sys.stdout
        self.restart_policy = restart
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.prefix = prefix
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._started: list[Service] = []
        self.events: list[tuple[float, str, str]] = []  # (time, service, what): exits and restarts

    # -- output ----------------------------------------------------------------

    def say(self, text: str) -> None:
        print(f"{self.prefix}: {text}", file=self.out, flush=True)

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    # -- starting --------------------------------------------------------------

    def _spawn(self, service: Service) -> None:
        if service.before_start is not None:
            service.before_start(service)
        argv = service.argv() if callable(service.argv) else list(service.argv)
        if service.log_file is not None:
            service.log_file.parent.mkdir(parents=True, exist_ok=True)
            out = service.log_file.open("ab")
            service.log_start = out.tell()
        else:
            out = subprocess.DEVNULL
        try:
            service.proc = subprocess.Popen(
                argv,
                env=service.env,
                cwd=service.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(
                    signal.SIGKILL if service.stop_signal == signal.SIGKILL else signal.SIGTERM
                ),
            )
        except OSError as exc:
            raise StackError(f"cannot start {service.name} ({argv[0]}): {exc}") from exc
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        service.starts += 1

    def _wait_ready(self, service: Service) -> None:
        deadline = time.monotonic() + service.ready_timeout_s
        while True:
            if not service.alive():
                code = service.proc.returncode if service.proc is not None else None
                raise StackError(
                    f"{service.name} exited ({describe_exit(code)}) before it was ready; "
                    f"its log ({service.log_file}):\n{service.log_tail()}"
                )
            try:
                if service.ready(service):
                    return
            except Exception:  # noqa: S110 - a probe that raises means "not yet"
                pass
            if time.monotonic() > deadline or self._stopping.is_set():
                raise StackError(
                    f"{service.name} not ready after {service.ready_timeout_s:.0f} s; "
                    f"its log ({service.log_file}):\n{service.log_tail()}"
                )
            time.sleep(0.2)

    def _line(self, service: Service, verb: str = "") -> str:
        where = f"{service.url}  " if service.url else ""
        log = f"  log {service.log_file}" if service.log_file else ""
        return f"{service.name:<9} {verb}{where}pid {service.pid}{log}"

    def start_service(self, service: Service) -> None:
        with self._lock:
            self._spawn(service)
            if service not in self._started:
                self._started.append(service)
        self._wait_ready(service)

    def _external(self, service: Service) -> None:
        deadline = time.monotonic() + service.ready_timeout_s
        last: Exception | None = None
        while True:
            try:
                if service.ready(service):
                    return
            except Exception as exc:
                last = exc
            if time.monotonic() > deadline or self._stopping.is_set():
                raise StackError(f"{service.name} at {service.url} does not answer: {last}")
            time.sleep(0.5)

    def _oneshot(self, service: Service) -> list[str]:
        argv = service.argv() if callable(service.argv) else list(service.argv)
        try:
            done = subprocess.run(
                argv,
                env=service.env,
                cwd=service.cwd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=service.ready_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{service.name} did not finish within {service.ready_timeout_s:.0f} s") from exc
        if service.log_file is not None:
            service.log_file.parent.mkdir(parents=True, exist_ok=True)
            with service.log_file.open("a") as log:
                log.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StackError(
                f"{service.name} failed ({describe_exit(done.returncode)}):\n{(done.stdout + done.stderr)[-3000:]}"
            )
        return [line for line in done.stdout.splitlines() if line.strip()]

    def start(self) -> None:
        """Start every service in order, each ready before the next; on failure stop what started."""
        try:
            for service in self.services:
                if self._stopping.is_set():
                    raise StackError("stopped while starting")
                if service.kind == "external":
                    self._external(service)
                    self.say(f"{service.name:<9} {service.url}  {service.note or 'up'}")
                elif service.kind == "oneshot":
                    for line in self._oneshot(service):
                        self.say(f"{service.name:<9} {line}")
                else:
                    self.start_service(service)
                    self.say(self._line(service))
        except BaseException:
            self.stop()
            raise

    # -- watching --------------------------------------------------------------

    def poll(self) -> None:
        """Handle services that exited since the last call (print, then restart or stop the stack)."""
        for service in list(self._started):
            with self._lock:
                if self._stopping.is_set() or service.proc is None or service.proc.poll() is None:
                    continue
                code = service.proc.returncode
                self.events.append((time.time(), service.name, f"exited {describe_exit(code)}"))
                if self.restart_policy == "never":
                    self.say(
                        f"{service.name} (pid {service.pid}) exited with {describe_exit(code)}: stopping"
                    )
                    raise StackError(f"{service.name} exited with {describe_exit(code)}")
                now = time.monotonic()
                while service.restarts and now - service.restarts[0] > self.restart_window_s:
                    service.restarts.popleft()
                if len(service.restarts) >= self.max_restarts:
                    self.say(
                        f"{service.name} exited with {describe_exit(code)}, its {self.max_restarts + 1}th "
                        f"exit within {self.restart_window_s:.0f} s: stopping"
                    )
                    raise StackError(f"{service.name} keeps exiting ({describe_exit(code)})")
                service.restarts.append(now)
                self.say(
                    f"{service.name} (pid {service.pid}) exited with {describe_exit(code)}: restarting "
                    f"({len(service.restarts)} in {self.restart_window_s:.0f} s)"
                )
                self._spawn(service)
            self._wait_ready(service)
            self.events.append((time.time(), service.name, "restarted"))
            self.say(self._line(service, "restarted "))

    def watch(self, stop: threading.Event, interval: float = 0.5) -> None:
        """poll() until `stop` is set or the stack gives up (StackError)."""
        while not stop.wait(interval):
            self.poll()

    # -- operator actions --------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to a service's process (as a crash would); the watcher notices. Returns the pid."""
        service = self.service(name)
        pid = service.pid
        if service.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                service.proc.send_signal(sig)
        return pid

    def restart(self, name: str) -> None:
        """Stop one service cleanly and start it again (ready before this returns)."""
        service = self.service(name)
        with self._lock:
            self._stop_one(service)
            self.events.append((time.time(), name, "stopped by operator"))
            self._spawn(service)
        self._wait_ready(service)
        self.events.append((time.time(), name, "restarted by operator"))
        self.say(self._line(service, "restarted "))

    # -- stopping ----------------------------------------------------------------

    def _signal(self, service: Service, sig: int) -> None:
        if service.proc is None or service.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGKILL:
                os.killpg(service.proc.pid, signal.SIGKILL)  # the whole group: forked helpers too
            else:
                service.proc.send_signal(sig)

    def _stop_one(self, service: Service) -> None:
        self._signal(service, service.stop_signal)
        if service.proc is None:
            return
        try:
            service.proc.wait(service.grace_s)
        except subprocess.TimeoutExpired:
            self.say(f"{service.name} (pid {service.pid}) still running after {service.grace_s:g} s: SIGKILL")
            self._signal(service, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.proc.wait(10)
        # A child of the service left in its process group (the ingest's committer) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop every process started, last started first (stop signal, SIGKILL after the grace period)."""
        self._stopping.set()
        with self._lock:
            for service in reversed(self._started):
                if service.alive():
                    self._stop_one(service)
                    self.say(f"{service.name:<9} stopped ({describe_exit(service.proc.returncode)})")
            self._started.clear()
