"""Revocation on Mosquitto: a new CRL (refuses reconnects) plus a dynsec kick (ends the live session).

Mosquitto needs both (FACTS.md): a CRL reloaded by SIGHUP leaves live connections
up, and a dynsec kick does not stop a certificate-authenticated client from
reconnecting. Mosquitto also fails *open* when the CRL it is told to reload is
unreadable, so the file is checked before the SIGHUP and nothing is signalled
if the check fails.
"""

from __future__ import annotations

import datetime as dt
import grp
import json
import logging
import os
import pwd
import signal
import stat
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509

from fleet import pki
from fleet.broker.mosquitto import CONTROL_RESPONSE_TOPIC, CONTROL_TOPIC

log = logging.getLogger(__name__)


class RevocationError(Exception):
    """Revocation did not fully reach the broker; `reason` says which step failed. Retry the whole call."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RevocationResult:
    device_id: str
    crl_seconds: float  # write + check + SIGHUP + reload confirmed
    kick_seconds: float  # admin round trip


def readable_by(path: str | os.PathLike[str], user: str) -> bool:
    """Whether `user` can read `path` by its mode bits, directories included (root would pass os.access)."""
    pw = pwd.getpwnam(user)
    groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    target = Path(path).resolve()

    def allowed(st: os.stat_result, usr: int, grp_: int, oth: int) -> bool:
        if st.st_uid == pw.pw_uid:
            return bool(st.st_mode & usr)
        if st.st_gid in groups:
            return bool(st.st_mode & grp_)
        return bool(st.st_mode & oth)

    for parent in reversed(target.parents):
        if not allowed(parent.stat(), stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return False
    return allowed(target.stat(), stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


@dataclass
class _Pending:
    expected: int
    done: threading.Event = field(default_factory=threading.Event)
    responses: list[dict] = field(default_factory=list)


class MosquittoRevoker:
    """Publishes CRLs to a running Mosquitto and kicks clients through a persistent dynsec admin connection.

    Thread-safe; one instance per process. The admin connection authenticates with
    the fleet-admin certificate on the server listener and is opened on first use.
    """

    def __init__(
        self,
        *,
        crl_path: str | os.PathLike[str],
        ca_key: pki.PrivateKey,
        ca_cert: x509.Certificate,
        host: str,
        port: int,
        ca_file: str,
        admin_cert_file: str,
        admin_key_file: str,
        pid: int | None = None,
        pid_file: str | None = None,
        broker_user: str | None = "mosquitto",
        crl_validity: dt.timedelta = dt.timedelta(days=1),
        timeout: float = 5.0,
    ) -> None:
        if pid is None and pid_file is None:
            raise ValueError("give the broker's pid or pid_file")
        self.crl_path = Path(crl_path)
        self._ca_key = ca_key
        self._ca_cert = ca_cert
        self._host, self._port = host, port
        self._tls = (ca_file, admin_cert_file, admin_key_file)
        self._pid, self._pid_file = pid, pid_file
        self._broker_user = broker_user
        self.crl_validity = crl_validity
        self._timeout = timeout
        self._lock = threading.Lock()  # one CRL write and one dynsec command at a time
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._pending: dict[str, _Pending] = {}

    # -- CRL -----------------------------------------------------------------

    def publish_crl(self, revoked: Iterable[tuple[int, dt.datetime]]) -> None:
        """Write a CRL of every revoked serial, check the broker can read it, then SIGHUP the broker.

        Call it also on a schedule, well inside `crl_validity`: an expired CRL makes
        Mosquitto refuse every client.
        """
        pem = pki.build_crl(
            ca_key=self._ca_key, ca_cert=self._ca_cert, revoked=revoked, next_update=self.crl_validity
        )
        with self._lock:
            try:
                pki.write_atomic(self.crl_path, pem, mode=0o644)
            except OSError as exc:
                raise RevocationError("crl_write_failed", str(exc)) from exc
            self._check_crl_readable(pem)
            self._sighup()

    def _check_crl_readable(self, expected: bytes) -> None:
        try:
            on_disk = self.crl_path.read_bytes()
            if on_disk != expected:
                raise RevocationError("crl_check_failed", "the CRL on disk is not the one just written")
            x509.load_pem_x509_crl(on_disk)
            if self._broker_user and not readable_by(self.crl_path, self._broker_user):
                raise RevocationError(
                    "crl_unreadable", f"{self.crl_path} is not readable by {self._broker_user}"
                )
        except (OSError, ValueError, KeyError) as exc:
            raise RevocationError("crl_check_failed", str(exc)) from exc

    def broker_pid(self) -> int:
        if self._pid is not None:
            return self._pid
        try:
            return int(Path(self._pid_file).read_text().strip())  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise RevocationError("broker_pid_unknown", str(exc)) from exc

    def _sighup(self) -> None:
        try:
            os.kill(self.broker_pid(), signal.SIGHUP)
        except ProcessLookupError as exc:
            raise RevocationError("broker_not_running", str(exc)) from exc

    # -- kick ------------------------------------------------------------------

    def kick(self, device_id: str) -> None:
        """Disconnect every live session of `device_id` (no error if none is connected).

        dynsec kicks on deleteClient, and only knows clients it has an entry for, so
        the entry is created and deleted in one command batch (the dynsec file ends clean).
        """
        responses = self._command(
            [
                {"command": "createClient", "username": device_id},
                {"command": "deleteClient", "username": device_id},
            ]
        )
        create, delete = responses
        if "error" in delete:
            raise RevocationError("kick_failed", f"deleteClient: {delete['error']}")
        if "error" in create:
            log.warning("dynsec createClient %s: %s (already present; deleted)", device_id, create["error"])

    def revoke(self, *, device_id: str, revoked: Iterable[tuple[int, dt.datetime]]) -> RevocationResult:
        """Make revocation effective: `revoked` is the full list of revoked (serial, time), this device included."""
        t0 = time.perf_counter()
        self.publish_crl(revoked)
        self.wait_reloaded()
        t1 = time.perf_counter()
        self.kick(device_id)
        t2 = time.perf_counter()
        return RevocationResult(device_id=device_id, crl_seconds=t1 - t0, kick_seconds=t2 - t1)

    def wait_reloaded(self) -> None:
        """Return once the broker has applied the SIGHUP of publish_crl.

        Mosquitto reloads at the end of the main-loop pass in which the signal lands,
        which can come *after* a command sent right behind the signal: a kick could
        then let the device straight back in on the old CRL. A dynsec round trip
        sent after the signal completes a pass with the reload flag already set.
        """
        response = self._command([{"command": "getDefaultACLAccess"}])[0]
        if "error" in response:
            raise RevocationError("broker_reload_unconfirmed", str(response["error"]))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.disconnect()
                self._client.loop_stop()
                self._client = None
                self._connected.clear()
                self._subscribed.clear()

    # -- admin connection ------------------------------------------------------

    def _ensure_client(self) -> mqtt.Client:
        if self._client is not None and self._connected.is_set() and self._subscribed.is_set():
            return self._client
        if self._client is None:
            client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=f"{pki.ADMIN_IDENTITY}-revoker-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                protocol=mqtt.MQTTv5,
            )
            ca_file, cert_file, key_file = self._tls
            client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file)
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message
            client.reconnect_delay_set(min_delay=1, max_delay=5)
            client.connect_async(self._host, self._port, keepalive=30)
            client.loop_start()
            self._client = client
        if not (self._connected.wait(self._timeout) and self._subscribed.wait(self._timeout)):
            raise RevocationError(
                "admin_connect_failed", f"no dynsec admin session to {self._host}:{self._port}"
            )
        return self._client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("dynsec admin connection refused: %s", reason_code)
            return
        self._connected.set()
        client.subscribe(CONTROL_RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if all(not rc.is_failure for rc in reason_codes):
            self._subscribed.set()
        else:
            log.error("dynsec admin may not subscribe to %s: %s", CONTROL_RESPONSE_TOPIC, reason_codes)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self._subscribed.clear()

    def _on_message(self, client, userdata, message) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable dynsec response: %r", message.payload[:200])
            return
        for response in responses:
            pending = self._pending.get(str(response.get("correlationData")))
            if pending is not None:
                pending.responses.append(response)
                if len(pending.responses) >= pending.expected:
                    pending.done.set()

    def _command(self, commands: list[dict]) -> list[dict]:
        """Send dynsec commands and return their responses in order; mosquitto_ctrl's exit code is useless."""
        correlation = uuid.uuid4().hex
        pending = _Pending(expected=len(commands))
        with self._lock:
            client = self._ensure_client()
            self._pending[correlation] = pending
            try:
                payload = json.dumps({"commands": [{**c, "correlationData": correlation} for c in commands]})
                info = client.publish(CONTROL_TOPIC, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise RevocationError("kick_failed", f"publish rc={info.rc}")
                if not pending.done.wait(self._timeout):
                    raise RevocationError("kick_timeout", f"no dynsec response in {self._timeout}s")
            finally:
                self._pending.pop(correlation, None)
        by_command = {r.get("command"): r for r in pending.responses}
        return [by_command.get(c["command"], {"error": "no response"}) for c in commands]
