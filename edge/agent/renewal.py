"""Certificate renewal over up/cert -> down/cert, with a fresh key each time.

When less than `renew_remaining` of the certificate's lifetime is left, the agent makes a
new key (pending.key, 0600) and CSR and queues up/cert. An issued certificate is
installed as the next identity generation and the link reconnects with it; the old
generation is kept until that connection succeeds and restored if the broker refuses the
new one `MAX_NEW_CERT_FAILURES` times in a row.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from edge.agent.errors import AgentError
from edge.agent.identity import Identity, IdentityStore, lifetime_used, write_atomic
from edge.agent.outbox import Outbox
from protocol.messages import new_message_id

log = logging.getLogger(__name__)

MAX_NEW_CERT_FAILURES = 3


class Renewal:
    def __init__(
        self,
        *,
        store: IdentityStore,
        outbox: Outbox,
        reconnect: Callable[[], None],
        renew_remaining: float,
        retry_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self._reconnect = reconnect
        self.renew_remaining = renew_remaining
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._previous_generation: int | None = None  # set while a new certificate is on trial
        self._failures = 0

    @property
    def _pending_file(self):
        return self.store.root / "renewal.json"

    def pending(self) -> dict | None:
        try:
            return json.loads(self._pending_file.read_text())
        except (OSError, ValueError):
            return None

    def due(self) -> bool:
        identity = self.store.load()
        return lifetime_used(identity.certificate()) >= 1.0 - self.renew_remaining

    def check(self) -> str | None:
        """Start a renewal if one is due and none is in flight; returns its request id."""
        with self._lock:
            if not self.due():
                return None
            pending = self.pending()
            if pending is not None and self._clock() - pending["ts"] < self.retry_s:
                return None
            return self._start()

    def start(self) -> str:
        """Renew now, whatever the lifetime left (operator request, tests)."""
        with self._lock:
            return self._start()

    def _start(self) -> str:
        identity = self.store.load()
        csr = self.store.start_renewal(identity.device_id)
        request_id = new_message_id()
        write_atomic(self._pending_file, json.dumps({"request_id": request_id, "ts": self._clock()}).encode())
        self.outbox.cert_request(request_id, csr)
        log.info("certificate renewal %s requested", request_id)
        return request_id

    def issued(self, request_id: str, certificate_pem: str, ca_pem: str) -> None:
        with self._lock:
            pending = self.pending()
            if pending is None or pending["request_id"] != request_id:
                log.warning("certificate for unknown renewal %s ignored", request_id)
                return
            previous = self.store.load().generation
            try:
                identity = self.store.install_renewal(certificate_pem=certificate_pem, ca_pem=ca_pem)
            except AgentError as exc:
                log.error("renewed certificate not installed: %s", exc)
                return
            self._pending_file.unlink(missing_ok=True)
            self._previous_generation, self._failures = previous, 0
        log.info("certificate generation %s installed; reconnecting", identity.generation)
        self._reconnect()

    def refused(self, request_id: str, error: str, detail: str) -> None:
        log.error("certificate renewal %s refused: %s %s", request_id, error, detail)
        with self._lock:
            pending = self.pending()
            if pending is not None and pending["request_id"] == request_id:
                self.store.pending_key_file.unlink(missing_ok=True)
                # Keep renewal.json: its timestamp spaces out the next attempt by retry_s.

    def connected(self, identity: Identity) -> None:
        """Link callback: the identity works; drop the old generation if this was a new one."""
        with self._lock:
            if self._previous_generation is not None and identity.generation > self._previous_generation:
                self._previous_generation = None
                self.store.prune()
                log.info("connected with certificate generation %s; old one deleted", identity.generation)

    def connect_failed(self, identity: Identity, reason: str) -> None:
        """Link callback: go back to the old certificate if the new one keeps being refused."""
        with self._lock:
            if self._previous_generation is None or identity.generation <= self._previous_generation:
                return
            self._failures += 1
            if self._failures >= MAX_NEW_CERT_FAILURES:
                log.error(
                    "new certificate refused %s times (%s); restoring the old one", self._failures, reason
                )
                self.store.rollback(self._previous_generation)
                self._previous_generation = None
