"""Slot operations below the client: install a verified artifact, clean up after a crash."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import msgspec
from msgspec.structs import replace

from edge.ota.faults import checkpoint
from edge.ota.state import (
    RELEASE_FILE,
    SLOTS,
    OtaState,
    SlotInfo,
    SlotName,
    StateStore,
    fsync_dir,
    write_atomic,
)
from protocol.manifest import Manifest

log = logging.getLogger(__name__)


def with_slot(state: OtaState, slot: SlotName, info: SlotInfo) -> OtaState:
    return replace(state, slots={**state.slots, slot: info})


def install(
    store: StateStore, state: OtaState, manifest: Manifest, part: Path, doc: dict[str, Any]
) -> OtaState:
    """Move a verified artifact into the inactive slot; returns the saved state (slot "ready", inactive).

    The slot is recorded "installing" first, so a crash half-way leaves a slot
    that start-up recovery knows to discard.
    """
    slot = state.other(state.active)
    state = store.save(with_slot(state, slot, SlotInfo(status="installing")))
    checkpoint("installing")
    store.wipe_slot(slot)
    write_atomic(store.slot_dir(slot) / RELEASE_FILE, msgspec.json.encode(doc))
    os.replace(part, store.model_path(slot))  # same filesystem: no copy, no half file
    fsync_dir(store.slot_dir(slot))
    fsync_dir(store.downloads_dir)
    info = SlotInfo(
        status="ready",
        model=manifest.model,
        version=manifest.version,
        serial=manifest.serial,
        sha256=manifest.sha256,
        size=manifest.size,
    )
    state = store.save(with_slot(state, slot, info))
    checkpoint("installed")
    return state


def intact(store: StateStore, state: OtaState, slot: SlotName) -> bool:
    """The slot's model file has the size and sha256 recorded at install."""
    info = state.slots[slot]
    path = store.model_path(slot)
    try:
        if path.stat().st_size != info.size:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == info.sha256


def sanitize(store: StateStore, state: OtaState, *, check_integrity: bool) -> OtaState:
    """Discard half-written or abandoned slots; outside a trial, fall back from a corrupt active model.

    Returns the state to save (unchanged if nothing was wrong). Does not touch a trial.
    """
    for slot in SLOTS:
        info = state.slots[slot]
        if info.status == "ready":
            continue
        if info.status == "installing":
            state = with_slot(state, slot, SlotInfo())
        if any(store.slot_dir(slot).iterdir()):
            store.wipe_slot(slot)
    if state.active is not None and state.slots[state.active].status != "ready":
        state = replace(state, active=None)
    # Hashing the whole model is for start-up only, not every (re)delivered offer.
    if check_integrity and state.trial is None and state.active and not intact(store, state, state.active):
        fallback = state.other(state.active)
        usable = state.slots[fallback].status == "ready" and intact(store, state, fallback)
        log.error("active model slot %s is corrupt; falling back to %s", state.active, usable and fallback)
        state = replace(with_slot(state, state.active, SlotInfo()), active=fallback if usable else None)
    return state
