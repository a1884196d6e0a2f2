"""Real footage with hand ground truth (a ground_truth.json beside the clips), for tests and the bench.

The clips are Intel IoT DevKit sample videos, CC BY 4.0 (tests/footage/README.md); the format
is that of ../shared/footage/ground_truth.json: per clip, objects with a label and the media
seconds they are in view, and for some clips things in view that are not events ("ignore").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge.vision.evaluate import GtObject


@dataclass(frozen=True)
class Clip:
    path: Path
    duration_s: float
    objects: tuple[GtObject, ...]


def load_clips(directory: str | Path) -> dict[str, Clip]:
    """The clips named in `directory`/ground_truth.json that exist there."""
    directory = Path(directory)
    data = json.loads((directory / "ground_truth.json").read_text())
    out = {}
    for name, clip in data["clips"].items():
        path = directory / name
        if path.is_file():
            objects = tuple(GtObject(e["label"], float(e["start"]), float(e["end"])) for e in clip["events"])
            out[name] = Clip(path, float(clip["duration_s"]), objects)
    return out
