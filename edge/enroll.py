"""Enrollment: the one HTTPS call a new camera makes to get its identity.

The key pair and CSR are made here, on the device; the private key is written with
mode 0600 and never leaves it (only the CSR is sent). The server answers with the
device id, the certificate, the fleet CA and the MQTT endpoint, all stored in the
state dir (edge.agent.identity).
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from edge.agent import AGENT_VERSION
from edge.agent.errors import AgentError
from edge.agent.identity import Identity, IdentityStore, MqttEndpoint, make_csr
from protocol.topics import is_device_id

log = logging.getLogger(__name__)

ENROLL_PATH = "/api/v1/enroll/"


@dataclass(frozen=True)
class EnrollAnswer:
    device_id: str
    certificate_pem: str
    ca_pem: str
    mqtt: MqttEndpoint
    api_url: str | None
    download_origins: tuple[str, ...] = ()


def default_serial() -> str:
    """The machine id where there is one (stable across reinstalls of the agent), else the hostname."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value:
            return value[:64]
    return platform.node()[:64] or "unknown"


def enroll_url(server_url: str) -> str:
    return server_url.rstrip("/") + ENROLL_PATH


def parse_answer(data: Any) -> EnrollAnswer:
    """Check the 201 body; a malformed answer never half-writes an identity."""
    try:
        mqtt = data["mqtt"]
        answer = EnrollAnswer(
            device_id=str(data["device_id"]),
            certificate_pem=str(data["certificate_pem"]),
            ca_pem=str(data["ca_pem"]),
            mqtt=MqttEndpoint(
                host=str(mqtt["host"]), port=int(mqtt["port"]), tls=bool(mqtt.get("tls", True))
            ),
            api_url=data.get("api_url"),
            download_origins=tuple(str(o) for o in data.get("download_origins") or ()),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AgentError("enroll_bad_answer", f"the server's answer lacks {exc}") from None
    if not is_device_id(answer.device_id):
        raise AgentError("enroll_bad_answer", f"invalid device id {answer.device_id!r}")
    return answer


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and err.get("message"):
            code = err.get("code")
            return f"{err['message']} ({code})" if code else str(err["message"])
    except ValueError:
        pass
    return resp.text[:300] or resp.reason or "no detail"


def post_enrollment(
    *,
    server_url: str,
    token: str,
    csr_pem: str,
    serial: str,
    hardware_model: str,
    agent_version: str = AGENT_VERSION,
    session: requests.Session | None = None,
    timeout: float = 30.0,
    verify: bool | str = True,
) -> EnrollAnswer:
    """POST the CSR (never a key) with the token; the checked 201 answer, or AgentError."""
    body = {
        "token": token,
        "csr_pem": csr_pem,
        "serial": serial,
        "hardware_model": hardware_model,
        "agent_version": agent_version,
    }
    http = session or requests.Session()
    url = enroll_url(server_url)
    try:
        resp = http.post(url, json=body, timeout=timeout, verify=verify)
    except requests.RequestException as exc:
        raise AgentError("enroll_unreachable", f"cannot reach {url}: {exc}") from None
    if 400 <= resp.status_code < 500:
        raise AgentError("enroll_refused", f"HTTP {resp.status_code}: {_error_message(resp)}")
    if resp.status_code != 201:
        raise AgentError("enroll_unreachable", f"HTTP {resp.status_code} from {url}: {_error_message(resp)}")
    try:
        data = resp.json()
    except ValueError:
        raise AgentError("enroll_bad_answer", "the answer is not JSON") from None
    return parse_answer(data)


def enroll(
    *,
    server_url: str,
    token: str,
    state_dir: str | os.PathLike[str],
    serial: str | None = None,
    hardware_model: str = "generic",
    agent_version: str = AGENT_VERSION,
    session: requests.Session | None = None,
    timeout: float = 30.0,
    verify: bool | str = True,
) -> Identity:
    """Enroll once: new key (0600) + CSR -> POST -> store certificate, CA and endpoint. Raises AgentError."""
    store = IdentityStore(state_dir)
    if store.exists():
        current = store.load()
        raise AgentError("already_enrolled", f"{store.root} already holds device {current.device_id}")
    store.ensure_dir()
    key_file = store.key_file(1)
    key_file.unlink(missing_ok=True)  # a key of an enrollment that never completed: never reused
    key = store.new_key(1)
    serial = serial or default_serial()
    try:
        answer = post_enrollment(
            server_url=server_url,
            token=token,
            # The server ignores the subject and names the device; the serial is a readable hint.
            csr_pem=make_csr(key, serial[:64] or "device"),
            serial=serial,
            hardware_model=hardware_model,
            agent_version=agent_version,
            session=session,
            timeout=timeout,
            verify=verify,
        )
        identity = store.save(
            device_id=answer.device_id,
            generation=1,
            certificate_pem=answer.certificate_pem,
            ca_pem=answer.ca_pem,
            mqtt=answer.mqtt,
            api_url=answer.api_url or server_url.rstrip("/"),
            download_origins=answer.download_origins,
        )
    except AgentError:
        key_file.unlink(missing_ok=True)
        raise
    log.info("enrolled as %s (MQTT %s:%s)", identity.device_id, identity.mqtt.host, identity.mqtt.port)
    return identity
