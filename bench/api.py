"""Device API latency at fleet scale, against a naive ORM loop measured in the same run.

Seeds 100,000 devices (50 sites, 200 groups, 20 tags, 5 hardware models), then times the full
in-process DRF stack (token auth, FilterSet, cursor pagination, serialization) for four requests,
each interleaved with the same result computed the N+1 way (filter, then touch site, hardware
model, groups and tags row by row). Never part of the test suite; see bench/README.md.

    .venv/bin/python -m bench.api [--db postgres|sqlite] [--devices 100000] [--requests 200]
                                  [--reseed] [--drop] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

AIM_P95_MS = 50.0
PG_DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/fleet_bench"
SQLITE_PATH = Path(__file__).resolve().parent.parent / "var" / "bench" / "api.sqlite3"
N_SITES, N_GROUPS, N_MODELS = 50, 200, 5
TAGS = [
    "outdoor", "indoor", "ptz", "fisheye", "night-ir", "lpr", "people", "vehicles", "perimeter", "lobby",
    "retail", "warehouse", "parking", "dock", "entrance", "exit", "pilot", "beta", "poe", "lte",
]  # fmt: skip
PLACES = [
    "dock", "gate", "lobby", "aisle", "yard", "ramp", "roof", "hall", "exit", "stair", "vault", "till",
    "desk", "lift", "bay", "pump", "shed", "kiosk", "door", "fence", "cafe", "lab", "store", "atrium", "well",
]  # fmt: skip
NAME_NUMBERS = 400  # each "<place> cam <n>" name is shared by devices / (25 * 400) devices
SEARCH = "dock cam 17"  # matches "dock cam 17" and "dock cam 170".."179": ~0.1% of devices
FILTER_SITE_INDEX, FILTER_TAG = 0, "outdoor"  # one site (2% of devices) and a tag on ~15% of them
PAGE = 50


def configure(args: argparse.Namespace) -> None:
    """Environment for fleet.settings; must run before django.setup()."""
    if args.db == "sqlite":
        if args.reseed:
            SQLITE_PATH.unlink(missing_ok=True)
        SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{SQLITE_PATH}"
    else:
        url = os.environ.get("DATABASE_URL", "")
        os.environ["DATABASE_URL"] = url if url.startswith(("postgres", "pgsql")) else PG_DEFAULT_URL
        pg_database(os.environ["DATABASE_URL"], drop=args.reseed, create=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    os.environ["THROTTLE_USER"] = "1000000/min"  # the bench measures the stack, not the rate limiter
    os.environ["DEBUG"] = "False"
    os.environ.setdefault("DB_CONN_MAX_AGE", "600")  # a web worker's persistent connection
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def pg_database(url: str, *, drop: bool, create: bool) -> None:
    """Drop and/or create the bench database through the server's maintenance database."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if drop:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if create and not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def seed(*, devices: int) -> float:
    """Bulk-insert the registry; returns seconds taken. Deterministic (fixed random seed)."""
    from django.db import connection, transaction

    from devices.models import Device, DeviceGroup, DeviceState, HardwareModel, Site, Tag

    started = time.perf_counter()
    rng = random.Random(42)
    states = [DeviceState.ACTIVE] * 17 + [DeviceState.PROVISIONING, DeviceState.QUARANTINED, "decommissioned"]
    with transaction.atomic():
        sites = Site.objects.bulk_create(Site(name=f"Site {i:02d}") for i in range(N_SITES))
        models = HardwareModel.objects.bulk_create(
            HardwareModel(name=f"Cam HW{i}", cpu_arch="arm64", ram_mb=2048) for i in range(N_MODELS)
        )
        groups = DeviceGroup.objects.bulk_create(DeviceGroup(name=f"Group {i:03d}") for i in range(N_GROUPS))
        tags = Tag.objects.bulk_create(Tag(name=name) for name in TAGS)
        rows = Device.objects.bulk_create(
            (
                Device(
                    device_id=f"cam-{i:06d}",
                    name=f"{PLACES[i % len(PLACES)]} cam {i // len(PLACES) % NAME_NUMBERS}",
                    serial=f"SN{i:08d}",
                    site=sites[rng.randrange(N_SITES)],
                    hardware_model=models[rng.randrange(N_MODELS)],
                    state=rng.choice(states),
                    agent_version="1.4.2",
                    model_version="yolo-n-2024.06",
                )
                for i in range(devices)
            ),
            batch_size=5000,
        )
        group_through, tag_through = Device.groups.through, Device.tags.through
        group_through.objects.bulk_create(
            (
                group_through(device_id=d.pk, devicegroup_id=g.pk)
                for d in rows
                for g in rng.sample(groups, rng.randint(1, 2))
            ),
            batch_size=10000,
        )
        tag_through.objects.bulk_create(
            (tag_through(device_id=d.pk, tag_id=t.pk) for d in rows for t in rng.sample(tags, 3)),
            batch_size=10000,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would have them in production
    return time.perf_counter() - started


@dataclass
class Side:
    """Latency samples (ms) and queries of one side (API or naive loop) of one case."""

    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # this process only: Python cost, not DB wait
    queries: int = 0
    slowest_sql: str = ""
    slowest_ms: float = 0.0

    def pct(self, p: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self) -> dict:
        return {
            "p50_ms": round(self.pct(50), 2),
            "p95_ms": round(self.pct(95), 2),
            "max_ms": round(max(self.ms), 2),
            "mean_ms": round(statistics.fmean(self.ms), 2),
            "cpu_p50_ms": round(statistics.median(self.cpu_ms), 2),
            "queries": self.queries,
            "slowest_query_ms": round(self.slowest_ms, 2),
        }


@dataclass
class Case:
    name: str
    api: Callable[[], list[str]]  # one request; returns the device ids it answered
    naive: Callable[[], list[str]]
    result: dict = field(default_factory=dict)


def naive_rows(queryset) -> list[str]:
    """The N+1 way: every relation fetched lazily, row by row, into plain dicts."""
    rows = []
    for device in queryset:
        rows.append(
            {
                "device_id": device.device_id,
                "site": device.site.name if device.site_id else None,
                "hardware_model": device.hardware_model.name if device.hardware_model_id else None,
                "groups": [group.pk for group in device.groups.all()],
                "tags": sorted(tag.name for tag in device.tags.all()),
            }
        )
    return [row["device_id"] for row in rows]


def build_cases(client) -> list[Case]:
    from django.db.models import Q

    from devices.models import Device, Site

    site = Site.objects.order_by("pk")[FILTER_SITE_INDEX]
    base = "/api/v1/devices/"

    def get(url: str) -> dict:
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"GET {url} -> {response.status_code}: {response.content[:300]!r}")
        return response.json()

    def api_list(url: str) -> Callable[[], list[str]]:
        return lambda: [row["device_id"] for row in get(url)["results"]]

    page_url = base
    for _ in range(PAGE - 1):  # follow the cursors once; the 50th page URL is then timed repeatedly
        page_url = get(page_url)["next"]
    middle = Device.objects.count() // 2
    detail_id = Device.objects.order_by("pk").values_list("device_id", flat=True)[middle]
    search = Q(name__icontains=SEARCH) | Q(device_id__icontains=SEARCH) | Q(serial__icontains=SEARCH)
    offset = (PAGE - 1) * 50
    return [
        Case(
            "list site+tag",
            api_list(f"{base}?site={site.pk}&tag={FILTER_TAG}"),
            lambda: naive_rows(Device.objects.filter(site=site, tags__name=FILTER_TAG).order_by("-id")[:50]),
        ),
        Case(
            "list q=name",
            api_list(f"{base}?q={SEARCH.replace(' ', '+')}"),
            lambda: naive_rows(Device.objects.filter(search).order_by("-id")[:50]),
        ),
        Case(
            f"list page {PAGE}",
            api_list(page_url),
            lambda: naive_rows(Device.objects.order_by("-id")[offset : offset + 50]),
        ),
        Case(
            "detail",
            lambda: [get(f"{base}{detail_id}/")["device_id"]],
            lambda: naive_rows([Device.objects.get(device_id=detail_id)]),
        ),
    ]


def capture(fn: Callable[[], list[str]], side: Side) -> None:
    """Count queries in a separate pass (the debug cursor costs time) and keep the slowest one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as ctx:
            fn()
        counts.append(len(ctx.captured_queries))
        slowest = max(ctx.captured_queries, key=lambda q: float(q["time"]))
        if float(slowest["time"]) * 1000 >= side.slowest_ms:
            side.slowest_ms, side.slowest_sql = float(slowest["time"]) * 1000, slowest["sql"]
    side.queries = int(statistics.median(counts))  # the token's last-used touch adds one, once a minute


def explain(sql: str) -> list[str]:
    from django.db import connection

    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        return [row[0] for row in cursor.fetchall()]


def run_case(case: Case, *, requests: int, warmup: int, budget_s: float) -> None:
    api, naive = Side(), Side()
    got, expected = case.api(), case.naive()
    if got != expected:
        raise SystemExit(f"{case.name}: API and naive loop disagree: {got[:3]}... vs {expected[:3]}...")
    for _ in range(warmup):
        case.api(), case.naive()
    # Interleaved, so both sides see the same noise from whatever else shares the 2 cores; the time
    # budget bounds the run on a loaded machine (at least 30 pairs are always taken).
    deadline = time.perf_counter() + budget_s
    for i in range(requests):
        if i >= 30 and time.perf_counter() > deadline:
            break
        for fn, side in ((case.api, api), (case.naive, naive)):
            started, cpu = time.perf_counter(), time.process_time()
            fn()
            side.ms.append((time.perf_counter() - started) * 1000)
            side.cpu_ms.append((time.process_time() - cpu) * 1000)
    capture(case.api, api)
    capture(case.naive, naive)
    a, n = api.summary(), naive.summary()
    case.result = {
        "rows": len(got),
        "samples": len(api.ms),
        "api": a,
        "naive": n,
        "ratio_p50": round(a["p50_ms"] / n["p50_ms"], 3),
        "ratio_p95": round(a["p95_ms"] / n["p95_ms"], 3),
        "ratio_queries": round(a["queries"] / n["queries"], 3),
        "aim_met": a["p95_ms"] < AIM_P95_MS,
        "api_slowest_sql": api.slowest_sql,
        "api_slowest_explain": explain(api.slowest_sql),
    }


def machine() -> dict:
    import django
    import rest_framework
    from django.db import connection

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            db = f"PostgreSQL {cursor.fetchone()[0]}"
        else:
            cursor.execute("SELECT sqlite_version()")
            db = f"SQLite {cursor.fetchone()[0]}"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": models[0] if models else platform.processor(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "django": django.get_version(),
        "drf": rest_framework.__version__,
        "database": db,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),  # other work sharing the cores skews figures
    }


def print_report(info: dict, cases: list[Case], devices: int) -> None:
    samples = min(case.result["samples"] for case in cases)
    print(f"\nFleet API bench, {devices:,} devices, {info['date']}, >= {samples} timed pairs per request")
    print(", ".join(f"{k}={v}" for k, v in info.items() if k != "date"))
    head = f"{'request':<15}{'rows':>5} | {'API p50':>8}{'p95':>8}{'max':>8}{'cpu':>7}{'q':>4} | "
    head += f"{'naive p50':>9}{'p95':>8}{'max':>8}{'q':>5} | {'x p50':>6}{'x p95':>6}{'x q':>6} | p95<50ms"
    print(head + "\n" + "-" * len(head))
    for case in cases:
        r, a, n = case.result, case.result["api"], case.result["naive"]
        print(
            f"{case.name:<15}{r['rows']:>5} | {a['p50_ms']:>8.2f}{a['p95_ms']:>8.2f}{a['max_ms']:>8.2f}"
            f"{a['cpu_p50_ms']:>7.2f}{a['queries']:>4} | {n['p50_ms']:>9.2f}{n['p95_ms']:>8.2f}{n['max_ms']:>8.2f}{n['queries']:>5} | "
            f"{r['ratio_p50']:>6.2f}{r['ratio_p95']:>6.2f}{r['ratio_queries']:>6.2f} | "
            f"{'yes' if r['aim_met'] else 'NO'}"
        )
    print("ms per request; cpu = this process's CPU ms (p50); q = SQL queries per request; x = API / naive")
    for case in cases:
        r = case.result
        print(f"\n{case.name}: slowest API query {r['api']['slowest_query_ms']:.2f} ms")
        for line in r["api_slowest_explain"]:
            print("   ", line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case and side")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--budget", type=float, default=40.0, help="seconds of timed pairs per case, at most")
    parser.add_argument("--reseed", action="store_true", help="start from an empty database")
    parser.add_argument("--drop", action="store_true", help="drop the PostgreSQL database at the end")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.devices < 2 * PAGE * 50 or not 1 <= args.requests <= 5000:
        parser.error(
            f"--devices must be at least {2 * PAGE * 50} (page {PAGE} must exist); --requests 1..5000"
        )

    load_at_start = round(os.getloadavg()[0], 2)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    configure(args)
    import django

    django.setup()
    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic here
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from accounts.models import Role, User
    from accounts.services import token_create, user_create
    from devices.models import Device
    from fleet.audit import Actor

    call_command("migrate", verbosity=0)
    present = Device.objects.count()
    seconds = None
    if present == 0:
        print(f"seeding {args.devices:,} devices ...", flush=True)
        seconds = seed(devices=args.devices)
        print(f"seeded in {seconds:.1f} s", flush=True)
    elif present != args.devices:
        raise SystemExit(f"the database holds {present:,} devices, not {args.devices:,}: use --reseed")

    actor = Actor.system("bench")
    user = User.objects.filter(username="bench").first() or user_create(
        actor=actor, username="bench", role=Role.VIEWER
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(actor=actor, user=user, name='bench').key}")

    cases = build_cases(client)
    for case in cases:
        print(f"measuring {case.name} ...", flush=True)
        run_case(case, requests=args.requests, warmup=args.warmup, budget_s=args.budget)
    info = machine() | {"loadavg_1m_at_start": load_at_start}
    print_report(info, cases, args.devices)
    if args.json:
        figures = {"machine": info, "devices": args.devices, "requests": args.requests, "seed_s": seconds}
        figures["cases"] = {case.name: case.result for case in cases}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.drop and args.db == "postgres":
        from django.db import connections

        connections.close_all()
        pg_database(os.environ["DATABASE_URL"], drop=True, create=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
