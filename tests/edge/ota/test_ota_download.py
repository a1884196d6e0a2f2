"""Artifact download over real HTTP on 127.0.0.1: resume with Range, servers that misbehave."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ota_models import model_bytes

from edge.ota import OtaError
from edge.ota.fetch import download
from protocol.errors import ManifestError

DATA = model_bytes(4)
SHA = hashlib.sha256(DATA).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        mode = srv.mode
        if mode == "404":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "trickle":  # one byte a second: every read well inside any read timeout
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            try:
                for byte in DATA:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    srv.stopped.wait(1.0)
                    if srv.stopped.is_set():
                        return
            except OSError:
                pass
            return
        if mode.startswith("redirect:"):
            self.send_response(302)
            self.send_header("Location", mode.removeprefix("redirect:"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "endless":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(10_000):  # 640 MB at most, far beyond any test artifact
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and mode != "ignore_range":
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        else:
            self.send_response(200)
        body = DATA[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop_first" and len(srv.ranges) == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.mode = "range"
    srv.ranges = []
    srv.stopped = threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/model.onnx"
    yield srv
    srv.stopped.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def fetch(server, dest, url=None, **kwargs):
    kwargs.setdefault("chunk_size", 16 * 1024)
    kwargs.setdefault("backoff_s", 0.01)
    kwargs.setdefault("timeout_s", 5)
    kwargs.setdefault("allowed_origins", [server.url])
    download(url or server.url, dest, size=len(DATA), sha256=SHA, **kwargs)


def test_plain_download(server, tmp_path):
    dest = tmp_path / "a.part"
    fetch(server, dest)
    assert dest.read_bytes() == DATA
    assert server.ranges == [None]


def test_connection_dropped_mid_download_resumes_with_range(server, tmp_path):
    server.mode = "drop_first"
    dest = tmp_path / "a.part"
    fetch(server, dest)
    assert dest.read_bytes() == DATA
    assert server.ranges[0] is None
    resumed_at = int(server.ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(DATA) // 2


def test_partial_file_from_a_previous_run_is_resumed(server, tmp_path):
    dest = tmp_path / "a.part"
    dest.write_bytes(DATA[:100_000])
    fetch(server, dest)
    assert dest.read_bytes() == DATA
    assert server.ranges == ["bytes=100000-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.mode = "ignore_range"
    dest = tmp_path / "a.part"
    dest.write_bytes(DATA[:100_000])
    fetch(server, dest)
    assert dest.read_bytes() == DATA
    assert server.ranges == ["bytes=100000-", None]


def test_corrupt_partial_file_is_retried_once_from_zero(server, tmp_path):
    dest = tmp_path / "a.part"
    dest.write_bytes(b"\xff" * 100_000)  # right length, wrong bytes (e.g. torn write)
    fetch(server, dest)
    assert dest.read_bytes() == DATA
    assert server.ranges == ["bytes=100000-", None]


def test_endless_download_is_stopped_at_the_manifest_size(server, tmp_path):
    server.mode = "endless"
    dest = tmp_path / "a.part"
    with pytest.raises(ManifestError) as exc:
        fetch(server, dest)
    assert exc.value.reason == "oversize_download"
    assert not dest.exists()


def test_missing_artifact_fails_without_retrying(server, tmp_path):
    server.mode = "404"
    with pytest.raises(OtaError) as exc:
        fetch(server, tmp_path / "a.part")
    assert exc.value.reason == "download_failed"
    assert len(server.ranges) == 1


def test_unreachable_server_gives_up_after_bounded_attempts(tmp_path):
    with pytest.raises(OtaError) as exc:
        download("http://127.0.0.1:9/x", tmp_path / "a.part", size=len(DATA), sha256=SHA, max_attempts=3,
                 backoff_s=0.01, timeout_s=1, allowed_origins=["http://127.0.0.1:9"])  # fmt: skip
    assert exc.value.reason == "download_failed" and "3 attempts" in exc.value.detail


def test_client_resumes_a_truncated_download_over_http(server, rig):
    server.mode = "drop_first"
    with rig.client(download_origins=[server.url]) as client:
        assert client.apply(rig.offer(DATA, serial=1, url=server.url)) == "succeeded"
        assert client.active_model_path().read_bytes() == DATA
    assert server.ranges[0] is None and server.ranges[1].startswith("bytes=")


# -- where from, and for how long (issue 12) ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # a cloud metadata service
        "http://192.168.1.1/admin",  # the camera's LAN
        "file:///etc/shadow",  # the camera's own files
        "/etc/shadow",
        "ftp://example.com/model.onnx",
    ],
)
def test_a_url_off_the_allowed_origins_is_refused_before_any_request(server, tmp_path, url):
    with pytest.raises(OtaError) as exc:
        fetch(server, tmp_path / "a.part", url=url)
    assert exc.value.reason == "origin_refused"
    assert server.ranges == [] and not (tmp_path / "a.part").exists()


def test_the_same_host_on_another_port_or_scheme_is_another_origin(server, tmp_path):
    port = server.server_address[1]
    for url in (f"https://127.0.0.1:{port}/model.onnx", f"http://127.0.0.1:{port + 1}/model.onnx"):
        with pytest.raises(OtaError) as exc:
            fetch(server, tmp_path / "a.part", url=url)
        assert exc.value.reason == "origin_refused"


def test_a_redirect_off_the_allowed_origins_is_refused(server, tmp_path):
    server.mode = "redirect:http://10.0.0.1/model.onnx"
    with pytest.raises(OtaError) as exc:
        fetch(server, tmp_path / "a.part")
    assert exc.value.reason == "origin_refused" and "10.0.0.1" in exc.value.detail
    assert len(server.ranges) == 1


def test_a_redirect_within_the_allowed_origins_is_followed(server, tmp_path):
    server.mode = "redirect:/elsewhere.onnx"
    first = tmp_path / "a.part"
    with pytest.raises(OtaError) as exc:  # redirects to itself, again and again
        fetch(server, first)
    assert exc.value.reason == "download_failed" and "redirects" in exc.value.detail
    assert len(server.ranges) == 6


def test_a_server_that_trickles_bytes_is_cut_off_at_the_deadline(server, tmp_path):
    """One byte a second never trips the 5 s read timeout; the deadline ends it all the same."""
    server.mode = "trickle"
    dest = tmp_path / "a.part"
    with pytest.raises(OtaError) as exc:
        fetch(server, dest, deadline_s=2.5)
    assert exc.value.reason == "download_timeout"
    assert dest.stat().st_size < len(DATA)  # what arrived is kept for a later offer to resume


def test_the_client_refuses_an_offer_whose_artifact_is_off_its_origins(server, rig):
    with rig.client(download_origins=["https://fleet.example.com"]) as client:
        assert client.apply(rig.offer(DATA, serial=1, url=server.url)) == "failed"
    assert ("failed", "origin_refused", None) in rig.reports and server.ranges == []
