"""A shaped uplink in a network namespace: 256 kbit/s (tbf), +200 ms RTT and 1 % loss (a TCP proxy,
this kernel has no netem), a backlog of clips uploading; alerts must still arrive within 2 s at p95
and the bytes the agent sends must never exceed its bandwidth policy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_helpers import make_identity

from protocol import topics
from protocol.messages import Events, MediaGranted, MediaRequest, decode_up, encode, make

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
PROXY = HERE.parent / "agent" / "agent_proxy.py"
POLICY_KBPS = 128
LINK = "256kbit"
CLIPS, CLIP_BYTES, ALERTS = 6, 32 * 1024, 24
PART = 8 * 1024

pytestmark = pytest.mark.slow


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=20)


def _netns_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "ip/tc (iproute2) not installed"
    if _sh("ip", "netns", "list", check=False).returncode != 0:
        return "`ip netns` is not available"
    return None


class Recorder:
    """Server side: grants uploads, stores parts, timestamps every byte that arrives."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, int]] = []  # (time, bytes) of PUT bodies and MQTT payloads
        self.alert_latency: dict[str, float] = {}  # event id -> first arrival delay (QoS 1 may repeat)
        self.completed = 0
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with rec.lock:
                    rec.arrivals.append((time.time(), len(body)))
                self.send_response(200)
                self.send_header("ETag", f'"{uuid.uuid4().hex}"')
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.http = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


def test_alerts_get_through_a_clip_backlog_on_a_shaped_link(fleet_pki, tmp_path):
    reason = _netns_available()
    if reason:
        pytest.skip(reason)
    from fleet.broker.embedded import EmbeddedBroker

    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"fleet-{tag}", f"vf{tag}", f"vn{tag}"
    subnet = 100 + int(tag[:2], 16) % 100
    host_ip, ns_ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
    procs: list[subprocess.Popen] = []
    broker = EmbeddedBroker(
        "0.0.0.0", 0,
        fleet_pki.broker_ca_pem, Path(fleet_pki.server_cert_file).read_bytes(),
        Path(fleet_pki.server_key_file).read_bytes(), lambda serial: False,
    )  # fmt: skip
    rec = Recorder()
    server = None
    try:
        try:
            _sh("ip", "netns", "add", ns)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot create a network namespace: {exc.stderr.strip()}")
        _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _sh("ip", "link", "set", ns_if, "netns", ns)
        _sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        _sh("ip", "link", "set", host_if, "up")
        nsx = ("ip", "netns", "exec", ns)
        _sh(*nsx, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        _sh(*nsx, "ip", "link", "set", ns_if, "up")
        _sh(*nsx, "ip", "link", "set", "lo", "up")
        _sh(
            *nsx,
            "tc",
            "qdisc",
            "add",
            "dev",
            ns_if,
            "root",
            "tbf",
            "rate",
            LINK,
            "burst",
            "4kb",
            "latency",
            "400ms",
        )

        broker.start()
        http_port = rec.http.server_address[1]
        # Inside the namespace: 127.0.0.1:P -> proxy (+100 ms each way, 1 % loss) -> veth (tbf) -> host.
        mqtt_proxy_port, http_proxy_port = 18830, 18080
        for listen, target in ((mqtt_proxy_port, broker.port), (http_proxy_port, http_port)):
            procs.append(subprocess.Popen(
                [*nsx, sys.executable, str(PROXY), "127.0.0.1", str(listen), host_ip, str(target),
                 "--delay-ms", "100", "--loss", "0.01"],
                stdout=subprocess.PIPE, text=True,
            ))  # fmt: skip
            assert procs[-1].stdout.readline().startswith("listening")

        # The server side: grant every media request, time every alert.
        server = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-ingest")
        server.tls_set(
            ca_certs=fleet_pki.ca_file, certfile=fleet_pki.ingest.cert_file, keyfile=fleet_pki.ingest.key_file
        )
        state = tmp_path / "agent"
        ident = make_identity(fleet_pki, state, host="127.0.0.1", port=mqtt_proxy_port)

        def on_message(client, userdata, m) -> None:
            now = time.time()
            with rec.lock:
                rec.arrivals.append((now, len(m.payload) + len(m.topic)))
            kind = topics.parse(m.topic).kind
            if kind not in ("events", "media"):
                return
            msg = decode_up(kind, m.payload)
            if isinstance(msg, Events):
                for e in msg.events:
                    if e.end is None and e.label == "person":
                        rec.alert_latency.setdefault(e.event_id, now - msg.ts)
            elif isinstance(msg, MediaRequest):
                count = -(-msg.size // PART)
                grant = make(
                    MediaGranted, request_id=msg.request_id, upload_id=f"up-{msg.request_id}", part_size=PART,
                    parts=[{"number": n, "url": f"http://127.0.0.1:{http_proxy_port}/{msg.request_id}/{n}"}
                           for n in range(1, count + 1)],
                    expires=time.time() + 600,
                )  # fmt: skip
                client.publish(topics.down(ident.device_id, "media"), encode(grant), qos=1)
            else:
                rec.completed += 1

        server.on_message = on_message
        server.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{topics.ROOT}/{ident.device_id}/up/#", qos=1)
        server.connect("127.0.0.1", broker.port)
        server.loop_start()

        config = {
            "state_dir": str(state),
            "source": "none",
            "bandwidth": {"max_kbps": POLICY_KBPS},
            "queue_min_free_mb": 0,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 2.0,
            "telemetry_sample_s": 3600,
        }
        (tmp_path / "agent.json").write_text(json.dumps(config))
        child = subprocess.Popen(
            [*nsx, sys.executable, str(HERE / "netns_agent_child.py"), str(tmp_path / "agent.json"),
             str(CLIPS), str(CLIP_BYTES), str(ALERTS)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(child)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]

        lat = sorted(rec.alert_latency.values())
        assert len(lat) == ALERTS, f"{len(lat)} alerts arrived"
        p95 = lat[int(0.95 * (len(lat) - 1))]
        assert p95 < 2.0, f"alert latency p95 {p95:.2f} s: {lat}"
        assert rec.completed == CLIPS
        # Rate: every window of >= 4 s carries at most rate * window + one bucket (burst) of bytes.
        rate = POLICY_KBPS * 1000 / 8
        burst = max(rate, 4096)
        times = sorted(rec.arrivals)
        total = sum(n for _, n in times)
        assert total >= CLIPS * CLIP_BYTES
        worst = 0.0
        for i, (t0, _) in enumerate(times):
            acc = 0
            for t, n in times[i:]:
                acc += n
                if t - t0 >= 4.0:
                    worst = max(worst, (acc - burst) / (t - t0))
        assert worst <= rate * 1.05, f"measured {worst * 8 / 1000:.1f} kbit/s over policy {POLICY_KBPS}"
        print(
            f"alert p95 {p95:.2f} s, worst 4 s+ window {worst * 8 / 1000:.1f} kbit/s (policy {POLICY_KBPS})"
        )
    finally:
        if server is not None:
            server.loop_stop()
            server.disconnect()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        broker.stop()
        rec.http.shutdown()
        rec.http.server_close()
        _sh("ip", "netns", "del", ns, check=False)
        _sh("ip", "link", "del", host_if, check=False)
