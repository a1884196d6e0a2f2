"""Enrollments per second end to end, against the raw `cryptography` signing rate in the same run.

End to end = POST /api/v1/enroll/ through DRF's APIClient in-process (JSON parsing, the
enrollment token row-locked and checked, CSR parse + self-signature + key check, hardware
model lookup, device create + audit + transition, certificate signing, DeviceCertificate and
token writes, response). No HTTP server. The device side (key generation, CSR signing) is
done before timing: a camera does it, not the server.

Baseline = `fleet.pki.sign_device_csr` on an already-parsed CSR: building and ECDSA-signing
one certificate with `cryptography`, nothing else. The ratio says how much of an enrollment
is the signature and how much is everything around it. Never part of the test suite.

    .venv/bin/python -m bench.enroll [--db sqlite|postgres] [--n 300] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

PG_DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/fleet_bench_enroll"


def configure(args: argparse.Namespace, tmp: Path) -> None:
    """Environment for fleet.settings; must run before django.setup()."""
    if args.db == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'enroll.sqlite3'}"
    else:
        url = os.environ.get("DATABASE_URL", "")
        os.environ["DATABASE_URL"] = url if url.startswith(("postgres", "pgsql")) else PG_DEFAULT_URL
        from bench.api import pg_database

        pg_database(os.environ["DATABASE_URL"], drop=True, create=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    os.environ["FLEET_DATA_DIR"] = str(tmp)
    os.environ["PKI_DIR"] = str(tmp / "pki")
    os.environ["THROTTLE_ENROLL"] = "100000000/min"  # the bench measures enrollment, not the limiter
    os.environ["DEBUG"] = "False"
    os.environ["LOG_LEVEL"] = "WARNING"


def machine() -> dict:
    import django

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "django": django.get_version(),
        "load": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=300, help="enrollments (and baseline signatures) to time")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    n = max(10, min(args.n, 5000))  # bounded: a few seconds to a minute on 2 cores

    with tempfile.TemporaryDirectory(prefix="fleet-bench-enroll-") as tmp_dir:
        tmp = Path(tmp_dir)
        configure(args, tmp)
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from rest_framework.test import APIClient

        from devices.enrollment import enrollment_token_create
        from devices.models import HardwareModel
        from fleet import broker_runtime, pki
        from fleet.audit import Actor

        call_command("migrate", verbosity=0)
        call_command("pki", "init", stdout=open(os.devnull, "w"))  # noqa: SIM115
        HardwareModel.objects.create(name="cam-x1", cpu_arch="arm64", ram_mb=2048)
        key = enrollment_token_create(actor=Actor.system("bench"), name="bench", max_uses=2 * n + 10).key
        ca_key, ca_cert = broker_runtime.signing_ca()  # loads (and caches) the CA once, as a web worker does

        warmup = 10
        # Device side, untimed: one key pair and CSR per camera.
        csrs = [
            pki.create_csr(key=pki.generate_key(), common_name="camera").decode() for _ in range(n + warmup)
        ]
        parsed = [pki.load_csr(c) for c in csrs[:n]]
        client = APIClient()

        def enroll(i: int) -> None:
            body = {"token": key, "csr_pem": csrs[i], "serial": f"SN-{i:06d}", "hardware_model": "cam-x1"}
            response = client.post("/api/v1/enroll/", body, format="json")
            if response.status_code != 201:
                raise SystemExit(f"enrollment {i} failed: {response.status_code} {response.content[:300]!r}")

        for i in range(n, n + warmup):
            enroll(i)
        load_start = os.getloadavg()

        # Interleave in blocks of 10 so both see the same machine noise.
        e2e_s, sign_s = [], []
        for block in range(0, n, 10):
            t0 = time.perf_counter()
            for i in range(block, min(block + 10, n)):
                enroll(i)
            e2e_s.append((time.perf_counter() - t0) / (min(block + 10, n) - block))
            t0 = time.perf_counter()
            for i in range(block, min(block + 10, n)):
                pki.sign_device_csr(
                    ca_key=ca_key,
                    ca_cert=ca_cert,
                    csr=parsed[i],
                    device_id=f"cam-bench{i:06d}",
                    valid_seconds=3600,
                )
            sign_s.append((time.perf_counter() - t0) / (min(block + 10, n) - block))

        e2e_rate = 1 / statistics.mean(e2e_s)
        sign_rate = 1 / statistics.mean(sign_s)
        figures = {
            "db": connection.vendor,
            "n": n,
            "enrollments_per_s": round(e2e_rate, 1),
            "enroll_ms_median": round(statistics.median(e2e_s) * 1000, 2),
            "raw_signatures_per_s": round(sign_rate, 1),
            "sign_ms_median": round(statistics.median(sign_s) * 1000, 3),
            "ratio_enroll_to_raw_signing": round(e2e_rate / sign_rate, 3),
            "machine": machine() | {"load_start": load_start},
        }
        print(f"machine: {figures['machine']}")
        print(
            f"database: {connection.vendor}, {n} enrollments through APIClient (in-process, no HTTP server)"
        )
        print(f"  end to end      {e2e_rate:8.1f} enrollments/s   (median {figures['enroll_ms_median']} ms)")
        print(f"  raw signing     {sign_rate:8.1f} certificates/s  (median {figures['sign_ms_median']} ms)")
        print(f"  ratio           {figures['ratio_enroll_to_raw_signing']:.3f} (end to end / raw signing)")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
