"""Edge vision on real footage: events per object, labels, thumbnails, speed, uplink and memory.

    .venv/bin/python bench/edge/footage.py [--footage ../shared/footage] [--out results.json]
        [--sheets bench/out/footage]

Never part of the test suite. The clips are Intel IoT DevKit sample videos, CC BY 4.0, with hand
ground truth (their ground_truth.json). Per clip and detector (the default NanoDet-g fp32, its
int8 build, the built-in motion detector), gate on and off, with the agent's default detection
settings: event recall and precision one event per object (edge.vision.evaluate, by time: the
built-in detector's "motion" label would match nothing), events per object, label accuracy,
sampled frames per second of pipeline time (and per CPU second of
the process, which other work on a shared machine does not slow down), uplink bytes through the agent's own EventReporter
(bench/edge/uplink_bytes.py) per camera-hour at the clip's own event rate, against a 1 Mbit/s
stream; and the resident memory of a process running the agent's Camera with the model loaded.
`--sheets` writes each run's thumbnails side by side, to check by eye that they show the object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.edge.run import machine  # noqa: E402
from bench.edge.uplink_bytes import account, telemetry_per_hour  # noqa: E402
from edge.agent.camera import build_detector  # noqa: E402
from edge.vision.config import DetectionConfig  # noqa: E402
from edge.vision.evaluate import score_events  # noqa: E402
from edge.vision.footage import load_clips  # noqa: E402
from edge.vision.models import default_model_path  # noqa: E402
from edge.vision.pipeline import Pipeline  # noqa: E402
from edge.vision.sources import open_source  # noqa: E402

STREAM_BYTES_PER_HOUR = 1_000_000 / 8 * 3600  # a 1 Mbit/s camera stream: 450 MB/h
DETECTORS = {  # name -> (detection settings over the agent's defaults, model variant or None)
    "default": ({}, "fp32"),
    "int8": ({}, "int8"),
    "builtin": ({"detector": "builtin"}, None),
}
ALARM_LABELS = ("person", "vehicle")


def run(clip, detector: str, *, gate: bool, threads: int) -> dict:
    settings, variant = DETECTORS[detector]
    cfg = DetectionConfig.from_dict(settings)
    model = default_model_path(variant) if variant else None
    pipe = Pipeline(cfg, build_detector(cfg, model, threads=threads), use_gate=gate)
    batches = []
    cpu = 0.0  # process CPU seconds inside the pipeline: what the frames cost, whatever else runs
    with open_source(str(clip.path)) as src:
        for frame in src:
            c0 = time.process_time()
            out = pipe.process(frame)
            cpu += time.process_time() - c0
            if out:
                batches.append(out)
    tail = pipe.flush()
    if tail:
        batches.append(tail)
    done = [e for b in batches for e in b if e.end is not None]
    score = score_events(done, clip.objects, by_label=False)
    st = pipe.stats
    return {
        "detector": detector,
        "gate": gate,
        "objects": len(clip.objects),
        "events": len(done),
        "recall": round(score.recall, 3),
        "precision": round(score.precision, 3),
        "events_per_object": round(score.fragmentation, 2),
        "label_accuracy": round(score.label_accuracy, 3),
        "alarms": sum(e.label in ALARM_LABELS for e in done),
        "labels": sorted({e.label for e in done}),
        "fps": round(st.fps, 1),
        "cpu_fps": round(st.frames_sampled / cpu, 1) if cpu > 0 else 0.0,
        "inference_ms": round(st.inference_ms, 1),
        "frames_sampled": st.frames_sampled,
        "frames_detected": st.frames_detected,
        "thumbnail_mean_bytes": round(float(np.mean([len(e.thumbnail) for e in done]))) if done else 0,
        "_batches": batches,
        "_done": done,
    }


def uplink(batches: list, duration_s: float, *, epoch: float) -> dict:
    """Wire and content bytes per camera-hour at the clip's own event rate (the shipped defaults)."""
    tally = account(batches, clip_labels=[], epoch=epoch).as_dict()
    per_hour = 3600 / duration_s
    return {k: round(sum(tally[k].values()) * per_hour) for k in ("wire", "content")}


def sheet(done: list, path: Path) -> None:
    """The run's thumbnails in a row, each under its label and score, 3x enlarged."""
    tiles = []
    for e in done:
        img = cv2.imdecode(np.frombuffer(e.thumbnail, np.uint8), cv2.IMREAD_COLOR)
        img = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
        tile = np.full((img.shape[0] + 24, max(img.shape[1], 150), 3), 255, np.uint8)
        tile[24:, : img.shape[1]] = img
        cv2.putText(tile, f"{e.label} {e.score:.2f}", (2, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        tiles.append(tile)
    if not tiles:
        return
    h = max(t.shape[0] for t in tiles)
    row = np.hstack([np.pad(t, ((0, h - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in tiles])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), row)


def memory_probe(variant: str | None, clip: str, threads: int) -> int:
    """In a child process: the agent's modules, its Camera with the detector loaded, the clip run
    through it once; returns the peak resident set in bytes (sampled every 50 ms)."""
    import psutil

    import edge.agent.runner  # noqa: F401 - everything the agent process imports
    from edge.agent.camera import Camera

    proc, peak, stop = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cam = Camera(
        source=clip,
        camera="cam0",
        detection={},
        detector="onnx" if variant else "builtin",
        model_path=None,
        default_model=default_model_path(variant) if variant else None,
        threads=threads,
        on_events=lambda events: None,
        realtime=False,
        loop_source=False,
    )
    cam.start()
    while cam._thread is not None and cam._thread.is_alive():
        time.sleep(0.1)
    stop.set()
    sampler.join()
    assert cam.frames > 0 and not cam.faults, cam.faults
    return peak[0]


def memory(clip: Path, threads: int) -> dict:
    out = {}
    for name, (_, variant) in DETECTORS.items():
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); from bench.edge.footage import memory_probe; "
            "print(memory_probe(sys.argv[2] or None, sys.argv[3], int(sys.argv[4])))"
        )
        res = subprocess.run(
            [sys.executable, "-c", code, str(ROOT), variant or "", str(clip), str(threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        out[name] = int(res.stdout.strip().splitlines()[-1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--footage", type=Path, default=ROOT.parent / "shared" / "footage")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (the agent's default: 1)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--sheets", type=Path, help="write each run's thumbnails as a PNG here")
    args = ap.parse_args()
    clips = load_clips(args.footage)
    info = {"machine": machine(), "threads": args.threads, "load_before": os.getloadavg(), "runs": []}
    print(json.dumps(info["machine"]), "threads", args.threads, "load", info["load_before"])
    epoch = time.time()
    for name, clip in clips.items():
        for detector in DETECTORS:
            for gate in (True, False):
                r = run(clip, detector, gate=gate, threads=args.threads)
                batches, done = r.pop("_batches"), r.pop("_done")
                r["clip"] = name
                if gate:
                    r["uplink_per_hour"] = uplink(batches, clip.duration_s, epoch=epoch)
                    if args.sheets:
                        sheet(done, args.sheets / f"{Path(name).stem}-{detector}.png")
                info["runs"].append(r)
                print(json.dumps(r))
    gated = [r for r in info["runs"] if r["gate"] and r["detector"] == "default"]
    fps = float(np.mean([r["fps"] for r in gated]))
    ms = float(np.mean([r["inference_ms"] for r in gated]))
    info["telemetry_wire_per_hour"] = sum(
        telemetry_per_hour(sent_per_hour={}, fps=fps, inference_ms=ms).wire.values()
    )
    car = next(c.path for n, c in clips.items() if n.startswith("car"))
    info["memory_rss"] = memory(car, args.threads)
    info["load_after"] = os.getloadavg()
    report(info)
    if args.out:
        args.out.write_text(json.dumps(info, indent=1))
    return 0


def report(info: dict) -> None:
    tele = info["telemetry_wire_per_hour"]
    print(
        f"\nload {info['load_before']} -> {info['load_after']}; telemetry {tele / 1e3:.1f} kB/h on the wire"
    )
    print("clip | detector | recall | precision | events/object | labels right | alarms | fps gate on / off "
          "(x) | fps per CPU-s on / off | ms/run | wire kB/h (+tel) | vs 1 Mbit/s (+tel)")  # fmt: skip
    runs = info["runs"]
    for r in (r for r in runs if r["gate"]):
        off = next(
            o for o in runs if not o["gate"] and (o["clip"], o["detector"]) == (r["clip"], r["detector"])
        )
        wire = r["uplink_per_hour"]["wire"]
        ratio = f"{STREAM_BYTES_PER_HOUR / wire:.0f}x" if wire else "inf"
        ratio_tel = f"{STREAM_BYTES_PER_HOUR / (wire + tele):.0f}x"
        print(
            f"{r['clip']} | {r['detector']} | {r['recall']:.2f} | {r['precision']:.2f} | "
            f"{r['events_per_object']:.2f} | {r['label_accuracy']:.2f} | {r['alarms']} ({r['events']} events "
            f"{','.join(r['labels'])}) | {r['fps']:.1f} / {off['fps']:.1f} (x{r['fps'] / off['fps']:.2f}) | {r['cpu_fps']:.1f} / {off['cpu_fps']:.1f} | "
            f"{r['inference_ms']} | {wire / 1e3:.1f} ({(wire + tele) / 1e3:.1f}) | {ratio} ({ratio_tel})"
        )
    for name, rss in info["memory_rss"].items():
        print(f"agent camera process, peak RSS with {name} detector: {rss / 2**20:.0f} MiB")


if __name__ == "__main__":
    raise SystemExit(main())
