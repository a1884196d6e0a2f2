"""down/ handlers end to end through the embedded broker: config, commands, certificate renewal."""

from __future__ import annotations

import logging

import pytest
from agent_helpers import (
    acks,
    agent_config,
    cert_cn,
    next_message,
    running,
    send_command,
    sign_csr,
    wait_for,
)

from edge.agent.identity import KEY_MODE
from protocol import topics
from protocol.down import BandwidthPolicy, DetectionSettings, DeviceConfig
from protocol.messages import CertIssued, Config, encode, make


def test_config_is_applied_to_pipeline_and_shaper(device, tmp_path):
    ident, server = device
    with running(agent_config(tmp_path)) as agent:
        assert next_message(server, kind="status")[1].state == "online"
        cfg = make(
            Config,
            revision=7,
            config=DeviceConfig(
                detection=DetectionSettings(min_score=0.8, labels=["person"], sample_fps=2.0),
                bandwidth=BandwidthPolicy(
                    max_kbps=64, classes_allowed=["alert", "event"], class_priority=["event"]
                ),
            ),
        )
        server.publish(topics.down(ident.device_id, "config"), encode(cfg), retain=True)
        _, status, _ = next_message(server, kind="status", where=lambda m: m.config_revision == 7)
        assert status.state == "online"
        assert agent.camera.config.min_score == 0.8 and agent.camera.config.sample_fps == 2.0
        assert agent.shaper.policy.max_kbps == 64
        assert agent.shaper.allowed_classes() == ("event", "alert")
        assert agent.queue.priority[:2] == ("event", "alert")
    # The applied revision survives a restart, before the retained config is even redelivered.
    server.publish(topics.down(ident.device_id, "config"), b"", retain=True)
    with running(agent_config(tmp_path)) as agent:
        assert agent.config_revision == 7 and agent.shaper.policy.max_kbps == 64


@pytest.fixture
def broker_logs_quiet():
    """The embedded broker runs in this test process (on a camera it does not): once the agent sets
    the root level to debug, its per-message lines would fill the agent's log ring."""
    loggers = [logging.getLogger(name) for name in ("amqtt", "transitions")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def test_command_is_acknowledged_then_succeeds(device, tmp_path, broker_logs_quiet):
    ident, server = device
    with running(agent_config(tmp_path)) as agent:
        next_message(server, kind="status")
        send_command(server, ident.device_id, "cmd-1", "set_log_level", args={"level": "debug"})
        first, second = acks(server, "cmd-1", 2)
        assert (first.status, second.status) == ("acknowledged", "succeeded")
        assert second.result == {"log_level": "debug"}

        # The agent shares this test process (and its log ring) with the broker and the server side:
        # at debug level their lines come between, so ask for more than the few it wrote since.
        send_command(server, ident.device_id, "cmd-2", "request_logs", args={"lines": 1000})
        done = acks(server, "cmd-2", 2)[1]
        assert done.status == "succeeded" and any("connected" in line for line in done.result["lines"])

        send_command(server, ident.device_id, "cmd-3", "reboot", expires_in=-1)
        (late,) = acks(server, "cmd-3", 1)
        assert (late.status, late.detail) == ("failed", "expired")
        assert agent.reboots == 0

        send_command(server, ident.device_id, "cmd-4", "snapshot")
        acked, failed = acks(server, "cmd-4", 2)
        assert acked.status == "acknowledged"
        assert failed.status == "failed" and "no camera" in failed.detail


def test_reboot_restarts_the_loop_and_comes_back_online(device, tmp_path):
    ident, server = device
    with running(agent_config(tmp_path)) as agent:
        next_message(server, kind="status")
        send_command(server, ident.device_id, "cmd-r", "reboot")
        assert [a.status for a in acks(server, "cmd-r", 2)] == ["acknowledged", "succeeded"]
        _, bye, _ = next_message(server, kind="status", where=lambda m: m.state == "offline")
        assert bye.reason == "reboot"
        assert next_message(server, kind="status")[1].state == "online"
        assert agent.reboots == 1


def test_certificate_renewal_installs_new_key_and_reconnects(device, fleet_pki, tmp_path):
    ident, server = device
    with running(agent_config(tmp_path)) as agent:
        next_message(server, kind="status")
        request_id = agent.renewal.start()
        pending = agent.identities.pending_key_file
        assert pending.stat().st_mode & 0o777 == KEY_MODE
        _, req, _ = next_message(server, kind="cert")
        assert req.request_id == request_id and "PRIVATE KEY" not in req.csr_pem
        issued = make(
            CertIssued,
            request_id=request_id,
            certificate_pem=sign_csr(fleet_pki, req.csr_pem, ident.device_id),
            ca_pem=ident.ca_file.read_text(),
        )
        server.publish(topics.down(ident.device_id, "cert"), encode(issued))
        assert wait_for(lambda: agent.link.connects == 2 and agent.link.identity.generation == 2, 15)
        now = agent.identities.load()
        assert now.generation == 2 and cert_cn(now.cert_file.read_bytes()) == ident.device_id
        assert now.key_file.stat().st_mode & 0o777 == KEY_MODE
        assert wait_for(lambda: not ident.key_file.exists() and not ident.cert_file.exists(), 5)
        assert not pending.exists()
