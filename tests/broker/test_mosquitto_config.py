"""fleet.broker.mosquitto rendering and the revoker's fail-closed CRL check (no broker needed)."""

import datetime as dt
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fleet import pki
from fleet.broker import mosquitto
from fleet.broker.revocation import MosquittoRevoker, RevocationError, readable_by


def _render(**overrides):
    kwargs = dict(
        port_devices=18883,
        port_ingest=18884,
        bind="0.0.0.0",
        server_bind="10.0.0.5",
        cafile="/etc/fleet/ca.crt",
        server_cafile="/etc/fleet/server-ca.crt",
        certfile="/etc/fleet/server.crt",
        keyfile="/etc/fleet/server.key",
        crlfile="/etc/fleet/crl.pem",
        acl_file="/etc/fleet/acl",
        dynsec_file="/var/lib/fleet/dynsec.json",
        persistence_dir="/var/lib/fleet/mosquitto",
        max_queued_bytes=512 * 1024 * 1024,
        dynsec_plugin_path="/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    )
    kwargs.update(overrides)
    return mosquitto.render(**kwargs)


def _listener_sections(conf: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    first = next(i for i, line in enumerate(lines) if line.startswith("listener "))
    sections: list[list[str]] = []
    for line in lines[first:]:
        if line.startswith("listener "):
            sections.append([])
        sections[-1].append(line)
    return lines[:first], sections


def test_tls_options_only_follow_listener_lines():
    conf = _render()["mosquitto.conf"]
    global_part, (devices, servers) = _listener_sections(conf)
    keys = {line.split()[0] for line in global_part}
    assert not keys & {"cafile", "certfile", "keyfile", "crlfile", "require_certificate", "listener"}
    assert {
        "per_listener_settings",
        "allow_anonymous",
        "acl_file",
        "plugin",
        "plugin_opt_config_file",
    } <= keys
    assert "per_listener_settings false" in global_part and "allow_anonymous false" in global_part
    assert devices[0] == "listener 18883 0.0.0.0" and servers[0] == "listener 18884 10.0.0.5"
    for section in (devices, servers):
        for option in ("require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2"):
            assert option in section
    # Each listener trusts one CA: devices the device CA (with its CRL), servers the server CA.
    assert "cafile /etc/fleet/ca.crt" in devices and "crlfile /etc/fleet/crl.pem" in devices
    assert "cafile /etc/fleet/server-ca.crt" in servers and not any(
        line.startswith("crlfile") for line in servers
    )
    assert "use_username_as_clientid true" in devices
    assert not any("use_username_as_clientid" in line for line in servers)


def test_acl_isolates_devices_by_certificate_cn():
    acl = _render()["acl"]
    lines = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "user fleet-ingest",
        "topic readwrite fleet/v1/devices/#",
        "topic read $SYS/broker/#",
        "pattern write fleet/v1/devices/%u/up/#",
        "pattern read fleet/v1/devices/%u/down/#",
    ]


def test_persistence_is_always_on_and_queues_are_bounded_by_bytes_not_by_count():
    """Issue 12: without max_queued_messages Mosquitto keeps 1,000 messages per session and drops
    the rest silently. The generated config always persists and caps queues by bytes instead."""
    lines = _render()["mosquitto.conf"].splitlines()
    for option in (
        "persistence true",
        "persistence_location /var/lib/fleet/mosquitto/",
        "max_queued_messages 10000000",
        f"max_queued_bytes {512 * 1024 * 1024}",
        "sys_interval 10",
    ):
        assert option in lines
    assert "persistence false" not in lines and not any(line.startswith("user ") for line in lines)
    conf = _render(run_as_user="root", pid_file="/run/m.pid")["mosquitto.conf"].splitlines()
    assert "user root" in conf and "pid_file /run/m.pid" in conf


def test_dynsec_initial_config_gives_the_admin_certificate_the_control_topic():
    config = json.loads(mosquitto.dynsec_initial_config())
    (client,) = config["clients"]
    assert client["username"] == pki.ADMIN_IDENTITY and "password" not in client
    (role,) = config["roles"]
    assert client["roles"] == [{"rolename": role["rolename"]}]
    allowed = {(acl["acltype"], acl["topic"]) for acl in role["acls"] if acl["allow"]}
    assert ("publishClientSend", "$CONTROL/dynamic-security/#") in allowed
    assert ("subscribePattern", "$CONTROL/dynamic-security/#") in allowed


def test_dynsec_plugin_is_found_by_glob():
    found = mosquitto.find_dynsec_plugin()
    if found is None:
        pytest.skip("mosquitto is not installed")
    assert found.endswith("mosquitto_dynamic_security.so") and os.path.exists(found)


@pytest.fixture
def open_dir():
    """A temp dir other users can traverse (pytest's own base dir is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="fleet-crl-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def broker_user():
    try:
        return pwd.getpwnam("mosquitto").pw_name
    except KeyError:
        pytest.skip("no mosquitto user on this machine")


def test_readable_by_follows_mode_bits_and_directories(open_dir, broker_user):
    tmp_path = open_dir
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "crl.pem").write_text("x")
    os.chmod(private / "crl.pem", 0o644)
    assert not readable_by(private / "crl.pem", broker_user)  # the directory blocks it
    os.chmod(private, 0o755)
    assert readable_by(private / "crl.pem", broker_user)
    os.chmod(private / "crl.pem", 0o600)
    assert not readable_by(private / "crl.pem", broker_user)


def test_revoker_refuses_to_signal_a_broker_that_could_not_read_the_crl(open_dir, broker_user):
    """Mosquitto would disable CRL checks on an unreadable CRL at SIGHUP (fail open): no SIGHUP then."""
    private = open_dir / "private"
    private.mkdir(mode=0o700)
    ca_key, ca_cert = pki.create_ca(common_name="t", valid_days=1)
    stand_in = subprocess.Popen(["sleep", "30"])  # SIGHUP would kill it
    try:
        revoker = MosquittoRevoker(
            crl_path=private / "crl.pem",
            ca_key=ca_key,
            ca_cert=ca_cert,
            host="127.0.0.1",
            port=1,
            ca_file="unused",
            admin_cert_file="unused",
            admin_key_file="unused",
            pid=stand_in.pid,
            broker_user=broker_user,
        )
        with pytest.raises(RevocationError) as err:
            revoker.publish_crl([(1, dt.datetime.now(dt.UTC))])
        assert err.value.reason == "crl_unreadable"
        assert stand_in.poll() is None, "the broker was signalled"

        os.chmod(private, 0o755)
        revoker.publish_crl([(1, dt.datetime.now(dt.UTC))])
        assert stand_in.wait(5) == -1  # SIGHUP delivered once the CRL is readable
    finally:
        stand_in.kill()
        stand_in.wait()
