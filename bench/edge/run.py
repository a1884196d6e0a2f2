"""Edge vision benchmark on synthetic scenes: built-in detector throughput, event recall/precision
and uplink bytes vs streaming (real footage and the default model: bench/edge/footage.py).

    .venv/bin/python bench/edge/run.py [--seconds 300] [--seeds 1,2,3] [--out results.json]

Never part of the test suite. Everything is generated here (the synthetic scene); nothing is
downloaded. The scene's people and vehicles are drawn shapes: the pretrained default model is
not for them, so this bench runs the built-in motion detector, scored by time (it labels "motion"). Figures are printed as ratios against baselines measured in the same run. Uplink
bytes are counted by replaying the events through the agent's own encoder (bench/edge/uplink_bytes.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.edge.uplink_bytes import GRANT_PATH_POLICY, account, telemetry_per_hour
from edge.vision import events as vision_events
from edge.vision.detectors import HogPeopleDetector, MotionBlobDetector, iou
from edge.vision.evaluate import score_events
from edge.vision.media import encode_thumbnail, thumbnail_crop
from edge.vision.pipeline import Pipeline
from edge.vision.synthetic import SceneParams, SyntheticScene

CONFIG = {"detector": "builtin", "min_score": 0.5, "sample_fps": 5, "motion_threshold": 0.002}
TYPICAL_STREAM_BPS = 1_000_000  # a 720p H.264 camera stream, bits per second
# Uplink scenarios replayed on the same events: (clip_labels, bandwidth policy or None for the
# server's default, thumbnails from the JPEG run). "shipped" is what the agent ships with.
SCENARIOS = {
    "shipped": ([], None, False),  # WebP inline, clips kept on the device
    "jpeg_inline": ([], None, True),
    "grant": ([], GRANT_PATH_POLICY, False),
    "jpeg_grant": ([], GRANT_PATH_POLICY, True),  # the thumbnail path before this change
    "alert": (["person"], None, False),
    "every": (None, None, False),  # clip_labels: null, the previous default
}
# (format, thumbnail_max_side, thumbnail_quality): the default first, then the previous defaults.
THUMB_SETTINGS = [
    ("webp", 96, 65),
    ("jpeg", 96, 65),
    ("jpeg", 160, 80),
    ("webp", 96, 55),
    ("webp", 96, 75),
    ("webp", 112, 65),
    ("webp", 80, 65),
    ("jpeg", 96, 55),
    ("jpeg", 80, 60),
]
# Telemetry periods (sample, message) in seconds: the agent's default, then the previous one.
TELEMETRY_PERIODS = {"default": (60.0, 120.0), "previous": (10.0, 60.0)}


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def run_pipeline(scene: SyntheticScene, detector, *, gate: bool, config: dict | None = None) -> dict:
    pipe = Pipeline(config or CONFIG, detector, camera="cam0", use_gate=gate)
    batches = []  # per frame, as the camera thread hands them to Agent.on_events
    for frame in scene.frames():
        out = pipe.process(frame)
        if out:
            batches.append(out)
    tail = pipe.flush()
    if tail:
        batches.append(tail)
    events = [e for batch in batches for e in batch]
    score = score_events(events, scene.events(), by_label=False)
    st = pipe.stats
    done = [e for e in events if e.end is not None]
    thumbs, clips = [len(e.thumbnail) for e in done], [len(e.clip) for e in done if e.clip]
    return {
        "detector": detector.name,
        "gate": gate,
        "fps": round(st.fps, 1),
        "inference_ms": round(st.inference_ms, 2),
        "stage_ms": {k: round(v, 2) for k, v in st.stage_ms.items()},
        "gate_open_ratio": round(st.gate_open_ratio, 3),
        "frames_sampled": st.frames_sampled,
        "frames_detected": st.frames_detected,
        "gt_events": score.gt_events,
        "events": score.detected_events,
        "recall": round(score.recall, 3),
        "precision": round(score.precision, 3),
        "fragmentation": round(score.fragmentation, 2),
        "thumbnail_mean_bytes": round(np.mean(thumbs)) if thumbs else 0,
        "clip_mean_bytes": round(np.mean(clips)) if clips else 0,
        "_batches": batches,
    }


def uplink(batches: list, *, epoch: float, jpeg_batches: list | None = None) -> dict:
    """Bytes by class in each scenario, for this run's events (JPEG rows only with jpeg_batches)."""
    out = {}
    for name, (labels, policy, jpeg) in SCENARIOS.items():
        if jpeg and jpeg_batches is None:
            continue
        kwargs = {} if policy is None else {"policy": policy}
        tally = account(jpeg_batches if jpeg else batches, clip_labels=labels, epoch=epoch, **kwargs)
        out[name] = tally.as_dict()
    return out


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of the luma (Wang et al. 2004, 7x7 Gaussian window, sigma 1.5)."""
    x, y = (cv2.cvtColor(i, cv2.COLOR_BGR2GRAY).astype(np.float64) for i in (a, b))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(i):
        return cv2.GaussianBlur(i, (7, 7), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def thumbnail_sweep(scene: SyntheticScene) -> list[dict]:
    """Bytes and fidelity of the same events' thumbnails in other formats, sizes and qualities.

    The best frames and boxes the event builder encodes (built-in detector) are recorded once,
    then encoded with each setting; fidelity is the SSIM against the uncompressed crop at the
    same size, and the chroma PSNR (Cr, Cb) for colour.
    """
    recorded = []
    real = vision_events.encode_thumbnail

    def recording(image, box, **kwargs):
        recorded.append((image.copy(), box))
        return real(image, box, **kwargs)

    vision_events.encode_thumbnail = recording
    try:
        run_pipeline(scene, MotionBlobDetector(), gate=True)
    finally:
        vision_events.encode_thumbnail = real
    out = []
    for fmt, side, quality in THUMB_SETTINGS:
        sizes, ssims, chroma = [], [], []
        for image, box in recorded:
            data = encode_thumbnail(image, box, max_side=side, quality=quality, fmt=fmt)
            ref = thumbnail_crop(image, box, max_side=side)
            got = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            sizes.append(len(data))
            ssims.append(ssim(ref, got))
            diff = cv2.cvtColor(ref, cv2.COLOR_BGR2YCrCb)[..., 1:].astype(float)
            diff -= cv2.cvtColor(got, cv2.COLOR_BGR2YCrCb)[..., 1:]
            chroma.append(10 * np.log10(255**2 / max(float((diff**2).mean()), 1e-9)))
        out.append(
            {
                "format": fmt,
                "max_side": side,
                "quality": quality,
                "events": len(sizes),
                "mean_bytes": round(float(np.mean(sizes))),
                "max_bytes": max(sizes),
                "ssim": round(float(np.mean(ssims)), 4),
                "chroma_psnr_db": round(float(np.mean(chroma)), 2),
            }
        )
    return out


def hog_probe(scene: SyntheticScene, *, frames: int = 40) -> dict:
    """HOG people detector on sampled frames: per-box recall against ground-truth people, speed."""
    det = HogPeopleDetector()
    found = total = fp = 0
    started = time.perf_counter()
    step = max(1, scene.n_frames // frames)
    idx = list(range(0, scene.n_frames, step))[:frames]
    for i in idx:
        dets = det.detect(scene.render(i))
        people = [b for b in scene.boxes(i) if b.label == "person"]
        total += len(people)
        hit = [any(iou(d.box, b.box) > 0.3 for d in dets) for b in people]
        found += sum(hit)
        fp += sum(not any(iou(d.box, b.box) > 0.3 for b in people) for d in dets)
    ms = (time.perf_counter() - started) * 1000 / len(idx)
    return {"frames": len(idx), "ms_per_frame": round(ms, 1), "people": total, "found": found, "false": fp}


def stream_baseline(params: SceneParams, *, seconds: float) -> dict:
    """Encode the same scene at 1280x720 with cv2.VideoWriter (MPEG-4 part 2): bytes per hour."""
    p = SceneParams(**{**params.__dict__, "width": 1280, "height": 720, "duration": seconds})
    scene = SyntheticScene(p)
    with tempfile.TemporaryDirectory() as tmp:
        path = scene.write_video(Path(tmp) / "stream.mp4")
        size = path.stat().st_size
    return {"seconds": seconds, "bytes": size, "bytes_per_hour": round(size * 3600 / seconds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--people", type=int, default=12)
    ap.add_argument("--vehicles", type=int, default=6)
    ap.add_argument("--seeds", default="1,2,3", help="the first seed gets every measurement")
    ap.add_argument("--stream-seconds", type=float, default=60)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    info = {"machine": machine(), "runs": [], "recall_seeds": [], "load_before": os.getloadavg()}
    print(json.dumps(info["machine"]), "load", info["load_before"])
    epoch = time.time()
    for n, seed in enumerate(seeds):
        spec = (
            f"seed={seed},width=640,height=360,fps=10,people={args.people},vehicles={args.vehicles},"
            f"duration={args.seconds:g},light_steps=3"
        )
        scene = SyntheticScene(SceneParams.parse(spec))
        variants = [(MotionBlobDetector, True)]
        if n == 0:
            variants += [(MotionBlobDetector, False)]
        for make, gate in variants:
            r = run_pipeline(scene, make(), gate=gate)
            batches = r.pop("_batches")
            r.update(seed=seed, scene=spec)
            if n == 0 and gate:
                jpeg = None
                if make is MotionBlobDetector:  # the same events, JPEG thumbnails
                    cfg = {**CONFIG, "thumbnail_format": "jpeg"}
                    jpeg = run_pipeline(scene, make(), gate=True, config=cfg)["_batches"]
                r["uplink"] = uplink(batches, epoch=epoch, jpeg_batches=jpeg)
            elif gate:  # other seeds: what the agent ships with, on other events
                r["uplink"] = {"shipped": account(batches, clip_labels=[], epoch=epoch).as_dict()}
            (info["runs"] if n == 0 else info["recall_seeds"]).append(r)
            print(json.dumps({k: v for k, v in r.items() if k not in ("scene", "uplink")}))
        if n == 0:
            info["scene"] = spec
            info["thumbnails"] = thumbnail_sweep(scene)
            print("thumbnails", json.dumps(info["thumbnails"]))
            info["hog"] = hog_probe(scene)
            print("hog", json.dumps(info["hog"]))
            info["stream"] = stream_baseline(scene.params, seconds=args.stream_seconds)
            print("stream", json.dumps(info["stream"]))
    gated = next(r for r in info["runs"] if r["detector"] == "motion-blob" and r["gate"])
    per_hour = 3600 / args.seconds
    sent = {cls: round(n * per_hour) for cls, n in gated["uplink"]["shipped"]["wire"].items()}
    info["telemetry"] = {
        name: telemetry_per_hour(
            sent_per_hour=sent,
            fps=gated["fps"],
            inference_ms=gated["inference_ms"],
            sample_s=sample_s,
            interval_s=interval_s,
        ).as_dict()
        for name, (sample_s, interval_s) in TELEMETRY_PERIODS.items()
    }
    info["load_after"] = os.getloadavg()
    report(info, args.seconds)
    if args.out:
        args.out.write_text(json.dumps(info, indent=1))
    return 0


ALL = ("alert", "event", "thumbnail", "clip")
ROWS = [  # (label, scenario, uplink classes counted)
    ("event metadata (start + end)", "shipped", ("alert", "event")),
    ("+ WebP thumbnails inline: shipped default", "shipped", ("alert", "event", "thumbnail")),
    ("+ JPEG thumbnails inline (thumbnail_format: jpeg)", "jpeg_inline", ("alert", "event", "thumbnail")),
    ("+ WebP thumbnails by upload grant", "grant", ("alert", "event", "thumbnail")),
    ("+ JPEG thumbnails by upload grant (previous path)", "jpeg_grant", ("alert", "event", "thumbnail")),
    ("+ clips of alert labels (clip_labels: [person])", "alert", ALL),
    ("+ every clip (clip_labels: null, previous default)", "every", ALL),
]


def report(info: dict, seconds: float) -> None:
    per_hour = 3600 / seconds
    measured = info["stream"]["bytes_per_hour"]
    typical = TYPICAL_STREAM_BPS / 8 * 3600
    print(f"\nstreaming baseline: measured mp4v 720p10 {measured / 1e6:.1f} MB/h; typical 1 Mbit/s "
          f"{typical / 1e6:.0f} MB/h; load {info['load_before']} -> {info['load_after']}")  # fmt: skip
    base = next(r for r in info["runs"] if r["detector"] == "motion-blob" and not r["gate"])
    tele = info["telemetry"]["default"]["wire"].get("telemetry", 0)
    for r in info["runs"]:
        ref = base
        print(
            f"{r['detector']:12s} gate={r['gate']!s:5s} fps={r['fps']:7.1f} "
            f"(x{r['fps'] / ref['fps']:.2f} vs no gate) inference={r['inference_ms']}ms "
            f"gate_open={r['gate_open_ratio']} recall={r['recall']} precision={r['precision']} "
            f"events={r['events']}/{r['gt_events']} thumb={r['thumbnail_mean_bytes']}B "
            f"clip={r['clip_mean_bytes']}B"
        )
        if "uplink" not in r:
            continue
        for label, scenario, classes in ROWS:
            if scenario not in r["uplink"]:
                continue
            tally = r["uplink"][scenario]
            content = sum(tally["content"].get(c, 0) for c in classes) * per_hour
            wire = sum(tally["wire"].get(c, 0) for c in classes) * per_hour
            print(
                f"    {label:52s} content {content / 1e3:8.1f} kB/h {typical / content:6.0f}x "
                f"(+tel {typical / (content + tele_content(info)):5.0f}x) | wire {wire / 1e3:8.1f} kB/h "
                f"{typical / wire:6.0f}x (+tel {typical / (wire + tele):5.0f}x), {measured / wire:6.0f}x vs mp4v"
            )
        print(f"    clips kept on the device (shipped): {r['uplink']['shipped']['kept_clips']}")
    gated = next(r for r in info["runs"] if r["detector"] == "motion-blob" and r["gate"])
    for scenario in ("shipped", "jpeg_grant"):
        parts = gated["uplink"][scenario]["parts"]
        print(f"per event on the wire (built-in, {scenario}):", ", ".join(
            f"{k} {v / gated['events']:.0f} B" for k, v in sorted(parts.items())))  # fmt: skip
    for name, t in info["telemetry"].items():
        print(f"telemetry ({name} periods {TELEMETRY_PERIODS[name]}): content "
              f"{t['content'].get('telemetry', 0) / 1e3:.1f} kB/h, wire {t['wire'].get('telemetry', 0) / 1e3:.1f} "
              f"kB/h, {t['messages'].get('telemetry', 0)} messages/h")  # fmt: skip
    for t in info["thumbnails"]:
        print(f"thumbnail {t['format']} {t['max_side']}px q{t['quality']}: mean {t['mean_bytes']} B "
              f"(max {t['max_bytes']}), SSIM {t['ssim']}, chroma PSNR {t['chroma_psnr_db']} dB")  # fmt: skip
    for r in info["recall_seeds"]:
        wire = sum(r["uplink"]["shipped"]["wire"].values()) * per_hour
        print(f"seed {r['seed']} {r['detector']:12s} recall={r['recall']} precision={r['precision']} "
              f"events={r['events']}/{r['gt_events']} shipped wire {wire / 1e3:.1f} kB/h {typical / wire:.0f}x, "
              f"+telemetry {typical / (wire + tele):.0f}x")  # fmt: skip
    hog = info["hog"]
    print(f"HOG people: {hog['found']}/{hog['people']} people found, {hog['false']} false, "
          f"{hog['ms_per_frame']} ms/frame")  # fmt: skip


def tele_content(info: dict) -> int:
    return info["telemetry"]["default"]["content"].get("telemetry", 0)


if __name__ == "__main__":
    raise SystemExit(main())
