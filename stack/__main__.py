"""`python -m stack` (`make stack`): Fleet's production processes on this machine, until Ctrl-C.

Configured by environment variables only (stack/config.py, docs/operations.md "make stack").
Exit code 0 after Ctrl-C or SIGTERM, 1 when the stack could not start or gave up on a process.
"""

from __future__ import annotations

import signal
import sys
import threading

from stack.config import stack_config
from stack.services import Stack
from stack.supervisor import StackError


def main() -> int:
    try:
        config = stack_config()
    except ValueError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    stack = Stack(config)
    stop = threading.Event()
    starting = True

    def on_signal(signum, frame) -> None:
        stop.set()
        if starting:
            raise KeyboardInterrupt  # interrupts the ordered start; start() stops what it started

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    say = stack.supervisor.say
    say(f"starting in {config.dir} (Celery on {config.celery_broker}); logs in {config.log_dir}")
    try:
        stack.start()
    except KeyboardInterrupt:
        say("interrupted while starting: stopped")
        return 0
    except (StackError, RuntimeError) as exc:
        say(f"could not start: {exc}")
        return 1
    starting = False
    say(
        f"up: {config.url} (sign in as {config.admin_user}; password in {config.dir / 'admin-password'}); Ctrl-C stops it"
    )
    code = 0
    try:
        stack.supervisor.watch(stop)
    except StackError as exc:
        say(f"giving up: {exc}")
        code = 1
    finally:
        stack.stop()
    say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
