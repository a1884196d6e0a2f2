"""Shared helpers of the agent tests: device identities made as the device makes them, signed by the test CA."""

from __future__ import annotations

import contextlib
import logging
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509

from edge.agent.config import AgentConfig
from edge.agent.identity import Identity, IdentityStore, MqttEndpoint, make_csr
from edge.agent.runner import Agent
from edge.enroll import EnrollAnswer
from fleet import pki
from protocol import topics
from protocol.messages import Command, decode_up, encode, make


def local_enroller(
    fleet_pki, *, host: str, port: int, valid_seconds: int = 3600
) -> Callable[..., EnrollAnswer]:
    """What the enrollment endpoint does, without Django: sign the CSR for a new device id."""

    def enroll(csr_pem: str, serial: str) -> EnrollAnswer:
        device_id = f"cam-{uuid.uuid4().hex[:10]}"
        cert = pki.sign_device_csr(
            ca_key=fleet_pki.ca_key,
            ca_cert=fleet_pki.ca_cert,
            csr=pki.load_csr(csr_pem),
            device_id=device_id,
            valid_seconds=valid_seconds,
        )
        return EnrollAnswer(
            device_id=device_id,
            certificate_pem=pki.cert_pem(cert).decode(),
            ca_pem=pki.cert_pem(fleet_pki.ca_cert).decode(),
            mqtt=MqttEndpoint(host=host, port=port, tls=True),
            api_url=None,
        )

    return enroll


def make_identity(fleet_pki, state_dir: Path, *, host: str, port: int, valid_seconds: int = 3600) -> Identity:
    """A device identity in `state_dir`: key and CSR made by edge.agent.identity, signed by the test CA."""
    store = IdentityStore(state_dir)
    key = store.new_key(1)
    answer = local_enroller(fleet_pki, host=host, port=port, valid_seconds=valid_seconds)(
        make_csr(key, "serial-1"), "serial-1"
    )
    return store.save(
        device_id=answer.device_id,
        generation=1,
        certificate_pem=answer.certificate_pem,
        ca_pem=answer.ca_pem,
        mqtt=answer.mqtt,
        api_url=None,
    )


def sign_csr(fleet_pki, csr_pem: str, device_id: str, valid_seconds: int = 3600) -> str:
    cert = pki.sign_device_csr(
        ca_key=fleet_pki.ca_key,
        ca_cert=fleet_pki.ca_cert,
        csr=pki.load_csr(csr_pem),
        device_id=device_id,
        valid_seconds=valid_seconds,
    )
    return pki.cert_pem(cert).decode()


def cert_cn(pem: str | bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    return str(cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value)


def agent_config(state_dir: Path, **overrides) -> AgentConfig:
    """Fast settings for tests: no camera, quick reconnects, no disk-free floor."""
    values = {
        "state_dir": state_dir,
        "source": "none",
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
        "publish_timeout_s": 3.0,
        "telemetry_sample_s": 3600.0,
        "queue_min_free_mb": 0,
        "keepalive_s": 10,
    }
    values.update(overrides)
    return AgentConfig(**values)


@contextlib.contextmanager
def running(config: AgentConfig) -> Iterator[Agent]:
    """An agent in this process, logging at its configured level as `python -m edge run` sets it
    (the root logger's level is otherwise whatever earlier tests left: at WARNING the agent's
    INFO lines, "connected" among them, never reach its log ring)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(config.log_level.upper())
    agent = Agent(config)
    agent.start()
    try:
        yield agent
    finally:
        agent.close()
        root.setLevel(level)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def next_message(probe, *, kind: str | None = None, timeout: float = 10.0, where=None):
    """(kind, decoded message, raw paho message) of the next up/ message matching kind and `where`."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no up/{kind} message within {timeout} s")
        try:
            raw: mqtt.MQTTMessage = probe.messages.get(timeout=remaining)
        except queue.Empty:
            continue
        t = topics.parse(raw.topic)
        if raw.payload == b"":
            continue
        msg = decode_up(t.kind, raw.payload)
        if (kind is None or t.kind == kind) and (where is None or where(msg)):
            return t.kind, msg, raw


def send_command(
    probe, device_id: str, command_id: str, name: str, *, args=None, expires_in: float = 60
) -> None:
    """Publish a down/cmd as the server does (`expires_in` < 0: already expired)."""
    fields = {"args": args} if args is not None else {}
    cmd = make(Command, command_id=command_id, name=name, expires=time.time() + expires_in, **fields)
    probe.publish(topics.down(device_id, "cmd"), encode(cmd))


def acks(probe, command_id: str, n: int) -> list:
    """The next `n` up/ack messages for `command_id`."""
    return [next_message(probe, kind="ack", where=lambda m: m.command_id == command_id)[1] for _ in range(n)]
