"""What a track must show before it is an event: the object moved, and it was seen whole.

- moved: furniture that a detector takes for a "tv" or a "chair", or a parked car, is in every
  frame and never an event. A track has moved once foreground (the motion gate's mask) covers
  part of its box on MOTION_FRAMES matched frames, or its centre has travelled half its size.
- whole: an arm or a hand reaching into view is always cut by the frame's top or side edge (the
  body it belongs to is out of view), and a detector may call it a "person". A track is whole
  once its box has been clear of the top, left and right edges; the bottom edge may cut it (a
  person close to the camera). Something that stays cut off at the edge for its whole visit is
  not reported.
"""

from __future__ import annotations

import numpy as np

from edge.vision.motion import MotionResult
from edge.vision.tracker import Track

FOREGROUND_SHARE = 0.05  # of the box's pixels
MOTION_FRAMES = 2
TRAVEL = 0.5  # of the box's smaller side
EDGE_MARGIN = 0.03  # of the frame's size


def observe(track: Track, *, frame_w: int, frame_h: int, motion: MotionResult | None) -> None:
    """Update the track's evidence from the frame it was just matched on; `motion` None: unusable mask."""
    x, y, w, h = track.box
    mx, my = EDGE_MARGIN * frame_w, EDGE_MARGIN * frame_h
    if y > my and x > mx and x + w < frame_w - mx:
        track.whole = True
    if track.moved:
        return
    fx, fy, fw, fh = track.first_box
    travel = np.hypot(x + w / 2 - fx - fw / 2, y + h / 2 - fy - fh / 2)
    if travel >= TRAVEL * min(w, h):
        track.moved = True
        return
    if motion is None:
        return
    s = motion.scale
    mh, mw = motion.mask.shape[:2]
    x0, y0 = int(max(0, x / s)), int(max(0, y / s))
    x1, y1 = int(min(mw, (x + w) / s)), int(min(mh, (y + h) / s))
    if x1 <= x0 or y1 <= y0:
        return
    share = np.count_nonzero(motion.mask[y0:y1, x0:x1]) / float((x1 - x0) * (y1 - y0))
    if share >= FOREGROUND_SHARE:
        track.motion_hits += 1
        track.moved = track.motion_hits >= MOTION_FRAMES
