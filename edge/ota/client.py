"""The device side of OTA: verify, download, install into the inactive slot, try, commit or revert.

Invariant: state.json (replaced atomically) always names an active slot that
is "ready" (or none: the built-in detector). A slot is written only while it
is inactive; it becomes active only together with a Trial record, and the
Trial is removed only by a commit (after the health check and the grace
period) or a revert. So after a power cut at any instant, recover() finds
either a committed model, or a trial it can re-check or undo.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from msgspec.structs import replace

from edge.ota import slots
from edge.ota.errors import HealthCheckError, OtaError
from edge.ota.faults import checkpoint
from edge.ota.fetch import download
from edge.ota.health import HealthCheck, OnnxHealthCheck
from edge.ota.state import OtaState, RolledBack, SlotInfo, StateStore, Trial
from protocol.down import ShadowRequest
from protocol.errors import ManifestError
from protocol.manifest import KeyList, Manifest, verify_keylist, verify_manifest
from protocol.messages import OtaOffer
from protocol.signing import public_key_from_b64, public_key_to_b64

log = logging.getLogger(__name__)

# Health checks a trial may start. A model that kills the process during its
# check or grace period is retried once after the restart, then reverted.
MAX_TRIAL_ATTEMPTS = 2
# Free disk kept beyond the artifact size (MiB), so an update never fills the disk.
DISK_RESERVE_MB = 64
# A download's deadline: this, plus the bytes still to fetch at the minimum rate.
DOWNLOAD_BASE_S = 300.0

Reporter = Callable[..., None]  # report(state, reason=None, progress=None); states from protocol OTA states


@dataclass(frozen=True, slots=True)
class OtaJob:
    """The deployment being worked on, for turning report() calls into up/ota messages."""

    deployment_id: str
    serial: int
    model: str


def _job_from_offer(offer: OtaOffer) -> OtaJob:
    # Best effort before verification: the report must name something even for a malformed manifest.
    signed = offer.manifest.get("signed")
    signed = signed if isinstance(signed, dict) else {}
    serial, model = signed.get("serial"), signed.get("model")
    return OtaJob(
        deployment_id=offer.deployment_id,
        serial=serial if type(serial) is int and serial >= 0 else 0,
        model=model if isinstance(model, str) and 0 < len(model) <= 128 else "unknown",
    )


class OtaClient:
    """One per device; holds an exclusive lock on the state dir while open.

    Call recover() once at start-up before loading a model, then apply(offer)
    for every down/ota offer (the retained offer is redelivered on each
    reconnect; applying an already-installed release just reports succeeded).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        hardware_model: str,
        agent_version: str,
        root_public_key: Ed25519PublicKey | str | None = None,
        report: Reporter | None = None,
        health_check: HealthCheck | None = None,
        grace_s: float = 30.0,
        on_active_changed: Callable[[Path | None], None] | None = None,
        on_shadow: Callable[[Path | None, ShadowRequest | None], None] | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        download_origins: Collection[str] = (),
        download_chunk_size: int = 256 * 1024,
        download_timeout_s: float = 30.0,
        download_attempts: int = 5,
        download_backoff_s: float = 0.5,
        download_min_bytes_per_s: float = 8 * 1024,
    ) -> None:
        self.store = StateStore(Path(state_dir))
        self.store.ensure_dirs()
        self.hardware_model = hardware_model
        self.agent_version = agent_version
        self._report = report
        self._health_check = health_check or OnnxHealthCheck()
        self.grace_s = grace_s
        self._on_active_changed = on_active_changed
        self._on_shadow = on_shadow
        self._session = session
        self._clock = clock
        # Where artifacts may come from (the server's and its object store's origins, from
        # enrollment), and how slow a download may be: 5 min plus the size at the minimum rate.
        self.download_origins = tuple(download_origins)
        self._download_min_rate = download_min_bytes_per_s
        self._download = {
            "chunk_size": download_chunk_size,
            "timeout_s": download_timeout_s,
            "max_attempts": download_attempts,
            "backoff_s": download_backoff_s,
        }
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self.job: OtaJob | None = None
        self._lock_fd = os.open(self.store.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OtaError("locked", f"another OTA client holds {self.store.root}") from None
        self._state = self._init_state(root_public_key)
        self._root = public_key_from_b64(self._state.root_public_key)

    # --- lifecycle -------------------------------------------------------------

    def _init_state(self, root_public_key: Ed25519PublicKey | str | None) -> OtaState:
        given = (
            root_public_key if isinstance(root_public_key, str | None) else public_key_to_b64(root_public_key)
        )
        if self.store.exists():
            state = self.store.load()
            if given is not None and given != state.root_public_key:
                # The pin is set once at provisioning; a different key is never adopted silently.
                raise OtaError("root_key_mismatch", "state dir is pinned to another root key")
            return state
        if given is None:
            raise OtaError("no_root_key", "first start needs the root public key to pin")
        public_key_from_b64(given)
        return self.store.save(OtaState(root_public_key=given))

    def close(self) -> None:
        """Stop waiting (a trial in its grace period stays uncommitted) and release the lock."""
        self._stop.set()
        with self._mutex:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # closing drops the flock
                self._lock_fd = -1

    def __enter__(self) -> OtaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- queries ---------------------------------------------------------------

    @property
    def state(self) -> OtaState:
        return self._state

    @property
    def installed_serial(self) -> int | None:
        return self._state.committed_serial

    def active_release(self) -> SlotInfo | None:
        return self._state.slots[self._state.active] if self._state.active else None

    def active_model_path(self) -> Path | None:
        """The model the detector should load, or None for the built-in detector."""
        return self.store.model_path(self._state.active) if self._state.active else None

    def release_at(self, model_path: Path) -> SlotInfo | None:
        """The release installed in the slot holding `model_path` (a ready slot), or None."""
        for slot, info in self._state.slots.items():
            if info.status == "ready" and info.model and self.store.model_path(slot) == model_path:
                return info
        return None

    def in_trial(self) -> bool:
        return self._state.trial is not None

    # --- internals -------------------------------------------------------------

    def _save(self, state: OtaState) -> OtaState:
        self._state = self.store.save(state)
        return self._state

    def report(self, state: str, reason: str | None = None, progress: float | None = None) -> None:
        if self._report is None:
            return
        try:
            self._report(state, reason=reason, progress=progress)
        except Exception:  # a broken callback must never break an update half-way
            log.exception("OTA report callback failed")

    def _notify_active(self) -> None:
        if self._on_active_changed is not None:
            try:
                self._on_active_changed(self.active_model_path())
            except Exception:
                log.exception("on_active_changed callback failed")

    def shadow(self, model_path: Path | None, request: ShadowRequest | None = None) -> None:
        """Start (a model and how) or stop (None) the shadow run of a candidate."""
        if self._on_shadow is not None:
            try:
                self._on_shadow(model_path, request)
            except Exception:
                log.exception("on_shadow callback failed")

    def _stored(self, manifest: Manifest) -> bool:
        """The inactive slot already holds this release, verified (stored by a shadow offer)."""
        info = self._state.slots[self._state.other(self._state.active)]
        return info.status == "ready" and (info.sha256, info.serial) == (manifest.sha256, manifest.serial)

    def _keylist(self, delivered: dict[str, Any], now: float) -> KeyList:
        stored = self._state.keylist
        stored_version = stored["signed"]["version"] if stored else None
        new = verify_keylist(delivered, root_public_key=self._root, current_version=stored_version, now=now)
        if stored_version is None or new.version > stored_version:
            self._save(replace(self._state, keylist=delivered))
            checkpoint("keylist_saved")
            return new
        # Same version: a re-delivery. Keep (and re-check) the stored one, never the delivered copy.
        return verify_keylist(stored, root_public_key=self._root, current_version=None, now=now)

    def _verify(self, offer: OtaOffer, now: float, installed: int | None) -> Manifest:
        keylist = self._keylist(offer.keylist, now)
        return verify_manifest(
            offer.manifest,
            keylist=keylist,
            installed_serial=installed,
            hardware_model=self.hardware_model,
            agent_version=self.agent_version,
            now=now,
        )

    def _is_active_release(self, offer: OtaOffer, now: float) -> bool:
        """The offer is (a valid copy of) the committed active release: a retained re-delivery."""
        active = self.active_release()
        if active is None or self._state.trial is not None:
            return False
        try:
            manifest = self._verify(offer, now, installed=None)
        except ManifestError:
            return False
        return manifest.serial == active.serial and manifest.sha256 == active.sha256

    # --- the update ------------------------------------------------------------

    def apply(self, offer: OtaOffer) -> str:
        """Run one offer to a terminal state; returns "succeeded", "failed" or "rolled_back"
        ("health_check" if close() interrupted the grace period), or "shadow" for a shadow offer."""
        with self._mutex:
            pending = self._recover(check_integrity=False)
            if pending is not None and pending != "succeeded":
                log.info("recovery before offer ended in %s", pending)
            self.job = _job_from_offer(offer)
            now = self._clock()
            try:
                manifest = self._verify(offer, now, installed=self._state.committed_serial)
            except ManifestError as exc:
                if exc.reason == "rollback" and self._is_active_release(offer, now):
                    self.report("succeeded")
                    return "succeeded"
                self.report("failed", exc.reason)
                return "failed"
            self.job = OtaJob(offer.deployment_id, manifest.serial, manifest.model)
            last = self._state.rolled_back
            if last is not None and (last.deployment_id, last.sha256) == (
                offer.deployment_id,
                manifest.sha256,
            ):
                self.report("rolled_back", last.reason)  # the same deployment already failed its trial here
                return "rolled_back"
            stored = self._stored(manifest)
            if not stored:
                try:
                    part = self._fetch(manifest, offer.artifact_url or manifest.artifact_url)
                except (ManifestError, OtaError) as exc:
                    self.report("failed", exc.reason)
                    return "failed"
            slot = self._state.other(self._state.active)
            if offer.shadow is not None:
                # Stored and verified, never activated: the candidate runs beside the active model.
                if not stored:
                    self._state = slots.install(self.store, self._state, manifest, part, offer.manifest)
                self.report("shadow")
                self.shadow(self.store.model_path(slot), offer.shadow)
                return "shadow"
            self.shadow(None)
            self.report("installing")
            if not stored:  # else the shadow run stored it: activate what was verified then
                self._state = slots.install(self.store, self._state, manifest, part, offer.manifest)
            self._save(
                replace(
                    self._state,
                    active=slot,
                    trial=Trial(
                        slot=slot,
                        previous=self._state.active,
                        deployment_id=offer.deployment_id,
                        serial=manifest.serial,
                        model=manifest.model,
                        started=now,
                        sha256=manifest.sha256,
                    ),
                )
            )
            self._notify_active()
            checkpoint("switched")
            return self._run_trial()

    def _fetch(self, manifest: Manifest, url: str) -> Path:
        part = self.store.downloads_dir / f"{manifest.sha256}.part"
        for other in self.store.downloads_dir.glob("*.part"):
            if other != part:  # one update at a time: an older partial will never be resumed
                other.unlink(missing_ok=True)
        have = part.stat().st_size if part.exists() else 0
        free = shutil.disk_usage(self.store.root).free
        if free - (manifest.size - have) < DISK_RESERVE_MB * 1024 * 1024:
            raise OtaError("disk_full", f"{free} bytes free, need {manifest.size - have} + reserve")
        self.report("downloading", progress=have / manifest.size)
        last = [time.monotonic(), have / manifest.size]

        def progress(received: int) -> None:
            fraction = received / manifest.size
            # At most every 2 s or 10 %: progress is a hint, not a stream.
            if fraction - last[1] >= 0.1 or time.monotonic() - last[0] >= 2.0:
                last[:] = [time.monotonic(), fraction]
                self.report("downloading", progress=fraction)

        download(
            url,
            part,
            size=manifest.size,
            sha256=manifest.sha256,
            allowed_origins=self.download_origins,
            deadline_s=DOWNLOAD_BASE_S + (manifest.size - have) / self._download_min_rate,
            session=self._session,
            on_progress=progress,
            on_stream_end=lambda: self.report("verifying"),
            **self._download,
        )
        checkpoint("downloaded")
        return part

    def _run_trial(self) -> str:
        trial = self._state.trial
        assert trial is not None
        self.report("health_check")
        self._save(replace(self._state, trial=replace(trial, attempts=trial.attempts + 1)))
        checkpoint("health_check")
        try:
            self._health_check(self.store.model_path(trial.slot))
        except HealthCheckError as exc:
            return self._revert(f"health_check_failed: {exc.reason}")
        except Exception as exc:  # the check itself blew up: treat as a failed check, never commit
            log.exception("health check raised")
            return self._revert(f"health_check_failed: {type(exc).__name__}")
        checkpoint("grace")
        if self._stop.wait(self.grace_s):
            return "health_check"  # shutting down: still a trial, recover() picks it up
        committed = max(self._state.committed_serial or 0, trial.serial)
        self._save(replace(self._state, trial=None, committed_serial=committed))
        checkpoint("committed")
        self.report("succeeded")
        return "succeeded"

    def _revert(self, reason: str) -> str:
        trial = self._state.trial
        assert trial is not None
        previous = trial.previous
        if previous is not None and self._state.slots[previous].status != "ready":
            previous = None
        state = slots.with_slot(self._state, trial.slot, SlotInfo())
        record = RolledBack(
            deployment_id=trial.deployment_id, sha256=trial.sha256, serial=trial.serial, reason=reason
        )
        self._save(replace(state, active=previous, trial=None, rolled_back=record))
        self._notify_active()
        checkpoint("reverting")
        self.store.wipe_slot(trial.slot)
        self.report("rolled_back", reason)
        return "rolled_back"

    # --- start-up recovery -----------------------------------------------------

    def recover(self) -> str | None:
        """Bring the slots to a consistent state after any crash or power cut.

        Discards half-written slots; checks the active model file; resolves an
        uncommitted trial by re-running its health check (at most
        MAX_TRIAL_ATTEMPTS checks in all, so a model that crashes the agent is
        reverted) or reverting. Returns the trial's outcome, or None if there
        was no trial.
        """
        with self._mutex:
            return self._recover(check_integrity=True)

    def _recover(self, *, check_integrity: bool) -> str | None:
        state = slots.sanitize(self.store, self._state, check_integrity=check_integrity)
        if state != self._state:
            self._save(state)
            self._notify_active()
        trial = self._state.trial
        if trial is None:
            return None
        self.job = OtaJob(trial.deployment_id, trial.serial, trial.model)
        if trial.attempts >= MAX_TRIAL_ATTEMPTS:
            return self._revert("trial_crashed")
        return self._run_trial()
