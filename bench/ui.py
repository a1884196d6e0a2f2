"""Web UI pages at fleet scale, against the API list measured in the same run, same client, same data.

Seeds 100,000 devices (bench/api.py's registry, plus a status row for each: 70 % online), then times
the full in-process Django stack with a signed-in session for: the cameras page (unfiltered, filtered
by site and tag, searched), the dashboard page and each of its live fragments, and the API device
list with the same filters as the baseline. Queries per request are counted at 10, 50 and 100 rows
per page to show they stay constant as rows grow. Never part of the test suite; see bench/README.md.

    .venv/bin/python -m bench.ui [--devices 100000] [--requests 100] [--reseed] [--drop] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from bench import api as bench_api

PG_URL = "postgres://postgres@127.0.0.1:5432/fleet_bench_ui"
AIM_RATIO = 1.5  # the page within 1.5x of the API list


def seed_status() -> float:
    """One DeviceStatus per device that was ever seen (70 % online), and a few events and alerts."""
    from django.db import connection, transaction
    from django.utils import timezone

    from devices.models import Device
    from telemetry.models import DeviceStatus

    started = time.perf_counter()
    rng = random.Random(7)
    now = timezone.now()
    with transaction.atomic():
        pks = list(Device.objects.values_list("pk", flat=True))
        seen = [pk for pk in pks if rng.random() < 0.95]
        Device.objects.filter(pk__in=seen).update(last_seen_at=now)
        DeviceStatus.objects.bulk_create(
            (DeviceStatus(device_id=pk, online=rng.random() < 0.7, since=now, reason="birth") for pk in seen),
            batch_size=10000,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return time.perf_counter() - started


@dataclass
class Timing:
    ms: list[float] = field(default_factory=list)
    queries: dict[int, int] = field(default_factory=dict)  # rows per page -> queries

    def pct(self, p: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Case:
    name: str
    url: str
    baseline: str | None  # the API request this page is compared with
    paged: bool = True  # rows per page can be varied (per_page / page_size)
    result: dict = field(default_factory=dict)


def build_cases() -> list[Case]:
    from devices.models import Site

    site = Site.objects.order_by("pk")[bench_api.FILTER_SITE_INDEX]
    q = bench_api.SEARCH.replace(" ", "+")
    tag = bench_api.FILTER_TAG
    return [
        Case("cameras", "/cameras/", "/api/v1/devices/"),
        Case(
            "cameras site+tag",
            f"/cameras/?site={site.pk}&tag={tag}",
            f"/api/v1/devices/?site={site.pk}&tag={tag}",
        ),
        Case("cameras q=name", f"/cameras/?q={q}", f"/api/v1/devices/?q={q}"),
        Case("cameras online", "/cameras/?connectivity=online", "/api/v1/devices/?connectivity=online"),
        Case("dashboard frame", "/", "/api/v1/devices/", paged=False),
        Case("dash: counts", "/dashboard/counts/", "/api/v1/fleet/status/", paged=False),
        Case("dash: problems", "/dashboard/problems/", "/api/v1/devices/", paged=False),
        Case("dash: rollouts", "/dashboard/deployments/", "/api/v1/deployments/", paged=False),
        Case("dash: alerts", "/dashboard/alerts/", "/api/v1/alerts/", paged=False),
        Case("dash: uplink", "/dashboard/uplink/", "/api/v1/devices/", paged=False),
    ]


def timed(client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"GET {url} -> {response.status_code}: {response.content[:300]!r}")
    return elapsed


def queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    return len(ctx.captured_queries)


def with_rows(url: str, rows: int, *, api: bool) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{'page_size' if api else 'per_page'}={rows}"


def run(case: Case, client, *, requests: int, warmup: int, budget_s: float) -> None:
    page, api = Timing(), Timing()
    for _ in range(warmup):
        timed(client, case.url), timed(client, case.baseline)
    deadline = time.perf_counter() + budget_s
    for i in range(requests):  # interleaved: both sides see the same noise on the shared cores
        if i >= 20 and time.perf_counter() > deadline:
            break
        page.ms.append(timed(client, case.url))
        api.ms.append(timed(client, case.baseline))
    sizes = (10, 50, 100) if case.paged else (None,)
    for rows in sizes:
        key = rows or 0
        page.queries[key] = queries(client, with_rows(case.url, rows, api=False) if rows else case.url)
        api.queries[key] = queries(
            client, with_rows(case.baseline, rows, api=True) if rows and case.paged else case.baseline
        )
    case.result = {
        "samples": len(page.ms),
        "page": {"p50_ms": round(page.pct(50), 2), "p95_ms": round(page.pct(95), 2), "queries": page.queries},
        "api": {"p50_ms": round(api.pct(50), 2), "p95_ms": round(api.pct(95), 2), "queries": api.queries},
        "ratio_p50": round(page.pct(50) / api.pct(50), 2),
        "ratio_p95": round(page.pct(95) / api.pct(95), 2),
        "queries_constant": len(set(page.queries.values())) == 1,
    }


def print_report(info: dict, cases: list[Case], devices: int) -> None:
    print(
        f"\nFleet web UI bench, {devices:,} devices, {info['date']}, >= {min(c.result['samples'] for c in cases)} timed pairs each"
    )
    print(", ".join(f"{k}={v}" for k, v in info.items() if k not in ("date", "drf")))
    head = f"{'page':<18}| {'p50':>7}{'p95':>8} {'queries @10/50/100':>19} | {'baseline (API)':<28}{'p50':>7}{'p95':>8}{'q':>4} | {'x p50':>6}{'x p95':>6}"
    print(head + "\n" + "-" * len(head))
    for c in cases:
        r, p, a = c.result, c.result["page"], c.result["api"]
        q = "/".join(str(v) for v in p["queries"].values())
        aq = next(iter(a["queries"].values()))
        print(
            f"{c.name:<18}| {p['p50_ms']:>7.2f}{p['p95_ms']:>8.2f} {q:>19} | {c.baseline[:28]:<28}{a['p50_ms']:>7.2f}{a['p95_ms']:>8.2f}{aq:>4} | {r['ratio_p50']:>6.2f}{r['ratio_p95']:>6.2f}"
        )
    dash = [c for c in cases if c.name.startswith("dash")]
    total = {p: sum(c.result["page"][f"{p}_ms"] for c in dash) for p in ("p50", "p95")}
    queries = sum(next(iter(c.result["page"]["queries"].values())) for c in dash)
    print(
        f"{'dashboard, all':<18}| {total['p50']:>7.2f}{total['p95']:>8.2f} {queries:>19} | the frame and its 5 live blocks, summed"
    )
    print(
        f"ms per request (in-process Django stack, session auth); x = page / API; aim: cameras pages x p95 <= {AIM_RATIO}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--budget", type=float, default=25.0, help="seconds of timed pairs per case, at most")
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--drop", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--db-url", default=PG_URL, help="a PostgreSQL database of its own (created)")
    args = parser.parse_args(argv)
    load_at_start = round(os.getloadavg()[0], 2)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ["DATABASE_URL"] = args.db_url
    bench_api.configure(argparse.Namespace(db="postgres", reseed=args.reseed))
    import django

    django.setup()
    warnings.filterwarnings("ignore", message="No directory at")
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import Role, User
    from accounts.services import user_create
    from devices.models import Device
    from fleet.audit import Actor
    from telemetry.models import DeviceStatus

    call_command("migrate", verbosity=0)
    if Device.objects.count() == 0:
        print(f"seeding {args.devices:,} devices ...", flush=True)
        print(f"seeded in {bench_api.seed(devices=args.devices):.1f} s", flush=True)
    elif Device.objects.count() != args.devices:
        raise SystemExit("the database holds another number of devices: use --reseed")
    if not DeviceStatus.objects.exists():
        print(f"statuses in {seed_status():.1f} s", flush=True)
    user = User.objects.filter(username="bench-ui").first() or user_create(
        actor=Actor.system("bench"), username="bench-ui", role=Role.OPERATOR
    )
    client = Client()
    client.force_login(user)
    cases = build_cases()
    for case in cases:
        print(f"measuring {case.name} ...", flush=True)
        run(case, client, requests=args.requests, warmup=args.warmup, budget_s=args.budget)
    info = bench_api.machine() | {"loadavg_1m_at_start": load_at_start}
    print_report(info, cases, args.devices)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"machine": info, "devices": args.devices, "cases": {c.name: c.result for c in cases}},
                indent=2,
            )
            + "\n"
        )
    if args.drop:
        from django.db import connections

        connections.close_all()
        bench_api.pg_database(os.environ["DATABASE_URL"], drop=True, create=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
