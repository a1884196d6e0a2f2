"""Quality gates and shadow mode: what shadow costs a camera, and how long a gate takes to decide.

    .venv/bin/python bench/gates.py shadow [--seconds 60]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fleet_bench_gates .venv/bin/python bench/gates.py decision [--cameras 1000]

shadow: the agent's pipeline (edge.vision.Pipeline) with the real default model (NanoDet-g fp32) on
the real footage cuts, unpaced, once alone and once with a candidate in shadow (edge.quality.ShadowRun
at the default share and CPU budget; the int8 build, then the fp32 model itself, as the candidate).
Frames processed per second and CPU (process time / wall time) as ratios against the run without.

decision: N cameras (10% canaries), a gated deployment; the canaries finish, then every camera sends
one up/telemetry message with its quality window through the ingest (telemetry.ingest.services.ingest_batch,
batches of 500, as the ingest commits them) and the engine ticks. Time from the wave's start to the
gate's decision, split into ingest and the deciding tick, against the same tick without gates.
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FOOTAGE = [ROOT / "tests" / "footage" / name for name in ("store-aisle.mp4", "car-two-cars.mp4")]


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}, "
        f"load {load:.1f} at start"
    )


def _frames() -> list:
    from edge.vision.sources import open_source

    return [f for clip in FOOTAGE for f in open_source(str(clip))]


def _run(frames: list, seconds: float, candidate, share: float, budget: float, pace_fps: float = 0.0) -> dict:
    """The pipeline over the frames (looped) for `seconds`: frames/s and CPU share, with or without shadow.

    pace_fps 0: unpaced (the most frames the camera can do); else one frame every 1/pace_fps s, as the
    agent samples a live camera, so the shadow shows as CPU rather than as lost frames."""
    from edge.quality import QualityMeter, ShadowRun
    from edge.vision.models import default_model_path
    from edge.vision.onnx_detector import OnnxDetector
    from edge.vision.pipeline import Pipeline

    detector = OnnxDetector(default_model_path("fp32"))
    shadow = None
    if candidate is not None:
        shadow = ShadowRun(
            OnnxDetector(candidate),
            QualityMeter(model="bench", version="candidate", role="shadow"),
            share=share,
            cpu_budget_pct=budget,
        )
    pipeline = Pipeline(
        {"sample_fps": 60},  # above the footage rate, unpaced: every frame, as fast as the detector goes
        detector,
        on_detect=(lambda ms, dets, frame: shadow.offer(frame.image, dets)) if shadow else None,
        use_gate=False,  # every frame through the detector: the camera's worst case
    )
    done, loops = 0, 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for frame in frames:
            if pace_fps:
                delay = t0 + done / pace_fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            # Media time 1/30 s apart whatever the cut: every frame passes the sampler, in order.
            pipeline.process(type(frame)(image=frame.image, ts=done / 30.0, index=done))
            done += 1
            if time.perf_counter() - t0 >= seconds:
                break
        loops += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stats = pipeline.stats
    out = {
        "fps": stats.frames_detected / wall,
        "cpu_pct": 100 * cpu / wall / (os.cpu_count() or 1),
        "frames": done,
    }
    if shadow is not None:
        window = shadow.meter.window() or {}
        out |= {
            "shadow_frames": window.get("frames", 0),
            "over_budget": shadow.over_budget,
            "recall": (window.get("matched", 0) / window["reference"]) if window.get("reference") else None,
        }
    return out


def bench_shadow(seconds: float) -> None:
    import onnxruntime

    from edge.vision.models import default_model_path
    from ota.gates import DEFAULT_SHADOW_SHARE

    frames = _frames()
    share, budget = DEFAULT_SHADOW_SHARE, 25.0
    print(machine())
    print(
        f"onnxruntime {onnxruntime.__version__}, 1 thread; {len(frames)} frames of {len(FOOTAGE)} cuts, looped"
    )
    print(f"shadow at the default share {share} of detector frames, CPU budget {budget:.0f}% of one core")
    candidates = (
        ("int8 candidate", default_model_path("int8")),
        ("fp32 candidate", default_model_path("fp32")),
    )
    for title, pace in (
        ("unpaced: the most frames a camera core does", 0.0),
        ("paced at 5 fps (the agent's sample rate)", 5.0),
    ):
        print(f"-- {title}")
        base = _run(frames, seconds, None, share, budget, pace)
        rows = [("without shadow", base)]
        for name, path in candidates:
            rows.append((f"shadow, {name}", _run(frames, seconds, path, share, budget, pace)))
        print(
            f"{'run':<26} {'fps':>7} {'ratio':>6} {'CPU %':>6} {'ratio':>6} {'shadow frames':>14} {'recall':>7}"
        )
        for name, r in rows:
            recall = "" if r.get("recall") is None else f"{r['recall']:.2f}"
            print(
                f"{name:<26} {r['fps']:7.2f} {r['fps'] / base['fps']:5.2f}x {r['cpu_pct']:6.1f} "
                f"{r['cpu_pct'] / base['cpu_pct']:5.2f}x {r.get('shadow_frames', ''):>14} {recall:>7}"
            )


def bench_decision(cameras: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fleet_bench_gates")
    sys.path.insert(0, str(ROOT / "bench" / "rollout"))
    from run import ensure_database

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    import io
    from unittest import mock

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from devices.models import Device, HardwareModel, Site
    from fleet.audit import Actor
    from ota.models import Deployment, DeviceUpdate
    from ota.services import (
        artifact_create,
        deployment_create,
        deployment_start,
        keys_init,
        release_create,
        tick,
    )
    from protocol import topics
    from protocol.messages import Telemetry, encode, make
    from telemetry.ingest.services import ingest_batch
    from telemetry.ingest.types import RawMessage
    from tests.ota.conftest import onnx_model_bytes

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE ota_deviceupdate, ota_deployment, ota_releaseartifact, ota_release, ota_releasetrack, "
            "ota_modelartifact_hardware_models, ota_modelartifact, ota_keylistdocument, ota_signingkey, "
            "telemetry_modelqualitysample, telemetry_processedmessage, devices_device CASCADE"
        )
    import tempfile

    from django.conf import settings

    work = Path(tempfile.mkdtemp(prefix="bench-gates-"))
    settings.STORAGE_BACKEND, settings.MEDIA_ROOT = "local", work / "media"
    system = Actor.system("bench")
    hw, _ = HardwareModel.objects.get_or_create(name="cam-x1", defaults={"cpu_arch": "arm64", "ram_mb": 2048})
    site, _ = Site.objects.get_or_create(name="Bench", defaults={"timezone": "Europe/Berlin"})
    now = timezone.now()
    Device.objects.bulk_create(
        Device(
            device_id=f"cam-g{i:06d}",
            name=f"g{i}",
            hardware_model=hw,
            site=site,
            state="active",
            last_seen_at=now,
        )
        for i in range(cameras)
    )
    keys_init(actor=system, root_out=work / "root.pem")
    art = artifact_create(
        actor=system,
        name="person-det",
        version="2.0.0",
        file=io.BytesIO(onnx_model_bytes()),
        hardware_models=[hw],
    )
    release = release_create(actor=system, artifact=art, hardware_models=["cam-x1"])
    gates = {"min_devices": 10, "min_frames": 1000, "latency_p95_regression": 0.25, "fps_drop": 0.2,
             "detection_rate_change": 0.5, "crash_rate_max": 1.0}  # fmt: skip

    def wave_start_to_decision(gated: bool) -> dict:
        Deployment.objects.all().delete()
        dep = deployment_create(
            actor=system,
            data={
                "name": "bench",
                "release": release,
                "targets": {"sites": [site.pk]},
                "waves": [100],
                "canary_count": cameras // 10,
                "gates": gates if gated else {},
            },
        )
        with mock.patch("ota.services.offers.send"):  # offers are not what is measured here
            t0 = time.perf_counter()
            deployment_start(actor=system, deployment=dep)
            DeviceUpdate.objects.filter(deployment=dep, wave=0).update(
                state="succeeded", finished_at=timezone.now()
            )
            canaries = set(
                DeviceUpdate.objects.filter(deployment=dep, wave=0).values_list(
                    "device__device_id", flat=True
                )
            )
            end = time.time()
            messages = []
            for i, device_id in enumerate(Device.objects.values_list("device_id", flat=True)):
                version = "2.0.0" if device_id in canaries else "1.0.0"
                q = {"model": "person-det", "version": version, "start": end - 120, "end": end, "frames": 600,
                     "latency_p50_ms": 30.0 + i % 7, "latency_p95_ms": 45.0 + i % 11, "fps": 5.0,
                     "detections": {"person": 30 + i % 5, "car": 4}, "score_mean": 0.6}  # fmt: skip
                body = make(Telemetry, samples=[{"ts": end, "cpu_pct": 40.0, "mem_pct": 50.0}], quality=[q])
                messages.append(RawMessage(topics.up(device_id, "telemetry"), encode(body), timezone.now()))
            t1 = time.perf_counter()
            for i in range(0, len(messages), 500):
                ingest_batch(messages=messages[i : i + 500])
            t2 = time.perf_counter()
            tick()
            t3 = time.perf_counter()
        dep.refresh_from_db()
        decided = dep.gate_results[0]["state"] if dep.gate_results else "(no gate)"
        return {"start": t1 - t0, "ingest": t2 - t1, "tick": t3 - t2, "total": t3 - t0, "decision": decided,
                "wave": dep.current_wave}  # fmt: skip

    print(machine())
    print(f"{cameras} cameras, {cameras // 10} canaries, one 2-minute quality window each through the ingest")
    base = wave_start_to_decision(False)
    gated = wave_start_to_decision(True)
    for name, r in (("no gates", base), ("gates on", gated)):
        print(
            f"{name:<9} start {r['start']:.3f} s, ingest {r['ingest']:.3f} s, deciding tick {r['tick']:.3f} s, "
            f"total {r['total']:.3f} s ({r['total'] / base['total']:.2f}x); decision: {r['decision']}, "
            f"wave now {r['wave']}"
        )
    print(f"the gate's own evaluation: {gated['tick'] - base['tick']:.3f} s more than a tick without gates")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("shadow")
    p.add_argument("--seconds", type=float, default=60.0)
    d = sub.add_parser("decision")
    d.add_argument("--cameras", type=int, default=1000)
    args = parser.parse_args()
    if args.what == "shadow":
        bench_shadow(args.seconds)
    else:
        bench_decision(args.cameras)


if __name__ == "__main__":
    main()
