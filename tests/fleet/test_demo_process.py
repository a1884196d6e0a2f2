"""`manage.py demo` as an operator runs it: a real process, real HTTP, Ctrl-C to stop."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_command(tmp_path, port: int, devices: int) -> tuple[list[str], dict]:
    """`manage.py demo` on its own data directory, SQLite database and ports, as a fresh machine runs it."""
    env = {
        **os.environ,
        "FLEET_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/demo.sqlite3",
        "MQTT_DEVICE_PORT": str(free_port()),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return [sys.executable, "manage.py", "demo", "--port", str(port), "--devices", str(devices)], env


def test_demo_runs_the_whole_system_and_stops_on_ctrl_c(tmp_path):
    """Web UI and API, embedded broker, ingest, inline worker and simulated cameras in one command."""
    port = free_port()
    command, env = demo_command(tmp_path, port, devices=3)
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "demo exited early:\n" + "".join(lines)
            lines.append(line)
            if "Fleet is up" in line:
                break
        output = "".join(lines)
        password = re.search(r"admin user created: admin / (\S+)", output).group(1)
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/readyz", timeout=10).json()["checks"]["database"]["status"] == "ok"
        session = requests.Session()
        login = session.get(f"{base}/admin/login/", timeout=10)
        session.post(
            f"{base}/admin/login/",
            data={
                "username": "admin",
                "password": password,
                "csrfmiddlewaretoken": login.cookies["csrftoken"],
            },
            headers={"Referer": f"{base}/admin/login/"},
            timeout=10,
        )
        assert session.get(f"{base}/api/docs/", timeout=10).status_code == 200
        # The simulated cameras enroll over HTTP, connect to the embedded broker with their
        # certificates, and their birth messages reach the registry through the ingest.
        online = 0
        while time.monotonic() < deadline and online < 3:
            online = session.get(f"{base}/api/v1/fleet/status/", timeout=10).json()["online"]
            time.sleep(0.5)
        assert online >= 3, "".join(lines)
        simulated = session.get(f"{base}/api/v1/devices/?tag=simulated", timeout=10).json()["results"]
        assert len(simulated) == 3 and all(d["hardware_model"] for d in simulated)
        assert len(session.get(f"{base}/api/v1/devices/", timeout=10).json()["results"]) == 6
        # The web UI: `/` is the dashboard once signed in; the cameras page lists the simulated ones.
        assert "/login/" in requests.get(f"{base}/", timeout=10).url
        assert 'id="counts"' in session.get(f"{base}/", timeout=10).text
        cameras = session.get(f"{base}/cameras/?tag=simulated", timeout=10).text
        assert all(d["name"] in cameras for d in simulated)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert rest.strip().endswith("stopped")


def test_demo_on_a_busy_port_says_so_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "FLEET_DATA_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path}/d.sqlite3",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        done = subprocess.run(
            [sys.executable, "manage.py", "demo", "--port", str(port), "--devices", "0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
