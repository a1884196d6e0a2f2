import numpy as np

from edge.vision.motion import MotionGate


def _noisy_background(seed: int, n: int, *, gain_drift: float = 0.0):
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (180, 320, 3)).astype(np.float32)
    base = np.repeat(np.repeat(base[::8, ::8], 8, 0), 8, 1)[:180, :320]  # textured, not flat
    for i in range(n):
        gain = 1.0 + gain_drift * i / n
        noise = rng.normal(0, 3, base.shape)
        yield np.clip(base * gain + noise, 0, 255).astype(np.uint8)


def test_gate_stays_closed_on_a_static_noisy_drifting_scene():
    gate = MotionGate(threshold=0.002)
    results = [gate.update(img) for img in _noisy_background(1, 60, gain_drift=0.15)]
    assert not any(r.open for r in results)
    assert gate.open_ratio == 0.0


def test_gate_opens_while_something_moves_and_closes_after():
    gate = MotionGate(threshold=0.002)
    opened = []
    for i, img in enumerate(_noisy_background(2, 80)):
        if 30 <= i < 50:  # a 14x36 px block walks across
            x = 40 + (i - 30) * 8
            img[100:136, x : x + 14] = (30, 30, 220)
        opened.append(gate.update(img).open)
    assert all(opened[32:50])
    assert not any(opened[:30])
    assert not any(opened[56:])
    assert 0.2 < gate.open_ratio < 0.35


def test_sudden_light_step_does_not_hold_the_gate_open():
    gate = MotionGate(threshold=0.002)
    opened = []
    for i, img in enumerate(_noisy_background(3, 60)):
        if i >= 30:
            img = np.clip(img.astype(np.float32) * 1.3, 0, 255).astype(np.uint8)
        opened.append(gate.update(img).open)
    assert sum(opened[30:]) <= 1
