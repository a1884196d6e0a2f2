"""An optional record of what the agent delivered: one JSON line per message the broker acknowledged.

For audits and end-to-end tests that count messages from the camera to the database: each line
has the time, the kind and the message id, and what a message carries that the server stores one
row of (telemetry samples by timestamp, events by id and whether the report was the end one). A
message re-sent after a lost PUBACK appears once per acknowledgement; its id is the same.
It grows without bound: leave `sent_log` unset on a camera.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from protocol import topics


class SentLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")

    def record(self, topic: str, payload: bytes) -> None:
        kind = topics.parse(topic).kind
        doc = json.loads(payload)
        line: dict[str, Any] = {"at": round(time.time(), 3), "kind": kind, "id": doc.get("id")}
        if kind == "telemetry":
            line["samples"] = [s.get("ts") for s in doc.get("samples", [])]
        elif kind == "events":
            line["events"] = [[e.get("event_id"), e.get("end") is not None] for e in doc.get("events", [])]
        with self._lock:
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every line of a sent log (a missing file: nothing was delivered)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
