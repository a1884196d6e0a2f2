"""Named crash points, so tests can cut the power at each step of an update.

With FLEET_OTA_FAULT=<step> in the environment the process SIGKILLs itself
when it reaches that step: no cleanup handlers, no flushing, exactly like a
power cut as far as this process can tell (data already handed to the kernel
survives; a real power cut can also lose un-fsynced pages, which is why every
state change is fsynced). Unset in production, where checkpoint() is a no-op.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "FLEET_OTA_FAULT"

# In the order an update reaches them.
STEPS: tuple[str, ...] = (
    "keylist_saved",  # a newer key list is stored
    "download_partial",  # part of the artifact is on disk
    "downloaded",  # artifact complete and verified, not yet installed
    "installing",  # inactive slot marked "installing", files being moved in
    "installed",  # slot "ready", still inactive
    "switched",  # new slot active on trial, health check not started
    "health_check",  # health check running (attempt counted)
    "grace",  # health check passed, grace period running
    "committed",  # trial committed, "succeeded" not yet reported
    "reverting",  # old slot re-activated, failed slot not yet wiped
)


def checkpoint(step: str) -> None:
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
