"""`python -m edge enroll` against a stand-in of POST /api/v1/enroll/ that records every request body."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from agent_helpers import cert_cn, local_enroller

from edge.agent.errors import AgentError
from edge.agent.identity import KEY_MODE, IdentityStore
from edge.enroll import enroll

ROOT = Path(__file__).resolve().parents[3]


class EnrollServer:
    """Answers like the enrollment endpoint: 201 with an identity for a good token, 403 otherwise."""

    def __init__(self, fleet_pki) -> None:
        self.bodies: list[bytes] = []
        sign = local_enroller(fleet_pki, host="127.0.0.1", port=8883)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(body)
                data = json.loads(body)
                if self.path != "/api/v1/enroll/" or data["token"] != "good-token":
                    err = {
                        "error": {
                            "code": "token_invalid",
                            "message": "enrollment token is unknown or used up",
                        }
                    }
                    return self._answer(403, err)
                a = sign(data["csr_pem"], data["serial"])
                return self._answer(
                    201,
                    {
                        "device_id": a.device_id,
                        "certificate_pem": a.certificate_pem,
                        "ca_pem": a.ca_pem,
                        "mqtt": {"host": a.mqtt.host, "port": a.mqtt.port, "tls": True},
                        "api_url": "http://127.0.0.1",
                    },
                )

            def _answer(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(fleet_pki):
    s = EnrollServer(fleet_pki)
    yield s
    s.close()


def test_enroll_keeps_the_key_private_and_stores_the_identity(server, tmp_path):
    identity = enroll(
        server_url=server.url, token="good-token", state_dir=tmp_path, serial="SN-1", hardware_model="cam-x1"
    )
    assert identity.key_file.stat().st_mode & 0o777 == KEY_MODE
    assert cert_cn(identity.cert_file.read_bytes()) == identity.device_id
    assert (identity.mqtt.host, identity.mqtt.port) == ("127.0.0.1", 8883)
    (body,) = server.bodies
    sent = json.loads(body)
    assert set(sent) == {"token", "csr_pem", "serial", "hardware_model", "agent_version"}
    assert "PRIVATE KEY" not in body.decode()
    key_body = b"".join(identity.key_file.read_bytes().splitlines()[1:-1])
    assert key_body not in body
    assert IdentityStore(tmp_path).load() == identity
    with pytest.raises(AgentError) as again:
        enroll(server_url=server.url, token="good-token", state_dir=tmp_path)
    assert again.value.reason == "already_enrolled"


def test_refused_token_shows_the_server_message_and_leaves_no_key(server, tmp_path):
    with pytest.raises(AgentError) as exc:
        enroll(server_url=server.url, token="bad", state_dir=tmp_path)
    assert exc.value.reason == "enroll_refused"
    assert "enrollment token is unknown or used up" in str(exc.value)
    assert not list((tmp_path / "identity").glob("*.key"))


def test_cli_enroll_and_network_failure(server, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "edge",
        "enroll",
        "--token",
        "good-token",
        "--state-dir",
        str(tmp_path / "a"),
    ]
    ok = subprocess.run([*cmd, "--server", server.url], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "enrolled as cam-" in ok.stdout
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    bad = subprocess.run(
        [*cmd[:-1], str(tmp_path / "b"), "--server", dead],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "enroll_unreachable" in bad.stderr and "cannot reach" in bad.stderr
