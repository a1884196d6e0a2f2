"""The one table: up/{kind} -> the handler that takes a batch of that kind (see ingest.types).

Handlers owned by other apps are imported lazily by dotted path, so the ingest runs
before they exist; their messages are dead-lettered with reason "no_handler" until then.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

HANDLERS: dict[str, str] = {
    "status": "telemetry.status.handlers.handle_status",
    "telemetry": "telemetry.metrics.handlers.handle_telemetry",
    "events": "telemetry.events.handlers.handle_events",
    "media": "telemetry.media.handlers.handle_media",
    "ack": "telemetry.commands.handlers.handle_acks",
    "ota": "ota.handlers.handle_reports",
    "cert": "devices.handlers.handle_cert",
}

Handler = Callable[..., None]

# A missing handler is looked up again after this long, so one deployed later is picked up.
_MISSING_RETRY_S = 60.0
_resolved: dict[str, Handler] = {}
_missing: dict[str, float] = {}


def resolve(kind: str) -> Handler | None:
    """The handler for `kind`, or None when its module or function does not exist (yet)."""
    handler = _resolved.get(kind)
    if handler is not None:
        return handler
    path = HANDLERS.get(kind)
    if path is None:
        return None
    if time.monotonic() - _missing.get(kind, -_MISSING_RETRY_S) < _MISSING_RETRY_S:
        return None
    module_name, _, attr = path.rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        # Only the handler's own module (or its package) being absent means "not installed";
        # a missing import inside it is a bug and surfaces as one.
        if exc.name is None or not module_name.startswith(exc.name):
            raise
        _missing[kind] = time.monotonic()
        log.warning("no handler for up/%s: %s not installed", kind, module_name)
        return None
    except AttributeError:
        _missing[kind] = time.monotonic()
        log.warning("no handler for up/%s: %s has no %s", kind, module_name, attr)
        return None
    _resolved[kind] = handler
    return handler


def reset() -> None:
    """Forget resolved handlers (tests that install one)."""
    _resolved.clear()
    _missing.clear()
