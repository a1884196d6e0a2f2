"""Durable A/B slot state: state.json, replaced atomically.

Layout under the state dir:
    state.json            OtaState below
    lock                  flock'ed by the one running client
    slots/a/, slots/b/    model.onnx + release.json (the signed manifest it came from)
    downloads/<sha256>.part   partial artifact, kept across restarts for resume
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Literal

import msgspec

from edge.ota.errors import OtaError

SlotName = Literal["a", "b"]
SLOTS: tuple[SlotName, SlotName] = ("a", "b")
MODEL_FILE = "model.onnx"
RELEASE_FILE = "release.json"


class SlotInfo(msgspec.Struct, frozen=True, kw_only=True):
    # empty -> installing (files being moved in) -> ready. Only a ready slot may be active.
    status: Literal["empty", "installing", "ready"] = "empty"
    model: str | None = None
    version: str | None = None
    serial: int | None = None
    sha256: str | None = None
    size: int | None = None


class Trial(msgspec.Struct, frozen=True, kw_only=True):
    """An activated but uncommitted slot. Present in state.json == not yet known good."""

    slot: SlotName
    previous: SlotName | None  # None: there was no model (built-in detector)
    deployment_id: str
    serial: int
    model: str
    sha256: str
    attempts: int = 0  # health checks started; counted before each run so a crash counts too
    started: float


class RolledBack(msgspec.Struct, frozen=True, kw_only=True):
    """The last release that failed its trial, so a retained re-delivery of the same
    offer is answered (rolled_back again) instead of tried again on every reconnect."""

    deployment_id: str
    sha256: str
    serial: int
    reason: str


class OtaState(msgspec.Struct, frozen=True, kw_only=True):
    format: int = 1
    root_public_key: str  # base64 raw Ed25519, pinned at provisioning, never replaced over the air
    keylist: dict[str, Any] | None = None  # the stored signed key list document
    active: SlotName | None = None
    slots: dict[str, SlotInfo] = msgspec.field(default_factory=lambda: {s: SlotInfo() for s in SLOTS})
    committed_serial: int | None = None  # highest serial ever committed: the rollback floor
    trial: Trial | None = None
    rolled_back: RolledBack | None = None

    def other(self, slot: SlotName | None) -> SlotName:
        return "b" if slot == "a" else "a"


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(OtaState)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write temp, fsync, rename over, fsync the directory: the old or the new file, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "state.json"
        self.slots_dir = root / "slots"
        self.downloads_dir = root / "downloads"

    def ensure_dirs(self) -> None:
        for d in (self.root, self.slots_dir, self.downloads_dir, *(self.slots_dir / s for s in SLOTS)):
            d.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> OtaState:
        try:
            return _DECODER.decode(self.path.read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            raise OtaError("state_corrupt", f"{self.path}: {exc}") from None

    def save(self, state: OtaState) -> OtaState:
        write_atomic(self.path, _ENCODER.encode(state))
        return state

    def slot_dir(self, slot: SlotName) -> Path:
        return self.slots_dir / slot

    def model_path(self, slot: SlotName) -> Path:
        return self.slot_dir(slot) / MODEL_FILE

    def wipe_slot(self, slot: SlotName) -> None:
        """Remove everything in a slot directory (the slot must already be recorded non-ready)."""
        d = self.slot_dir(slot)
        if d.exists():
            for child in d.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            fsync_dir(d)
        d.mkdir(parents=True, exist_ok=True)
