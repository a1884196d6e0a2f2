from edge.vision.detectors import Detection
from edge.vision.tracker import IouTracker


def _det(x, y, label="person", w=20, h=50):
    return Detection(label, 0.9, (x, y, w, h))


def test_track_keeps_its_id_across_frames_and_is_confirmed_after_min_hits():
    tracker = IouTracker(min_hits=2, max_age=2)
    first = tracker.update([_det(10, 10)], ts=0.0)
    assert first.confirmed == [] and first.active == []
    second = tracker.update([_det(14, 10)], ts=0.2)
    assert len(second.confirmed) == 1
    tid = second.confirmed[0].track_id
    for k in range(2, 10):
        upd = tracker.update([_det(10 + 4 * k, 10)], ts=0.2 * k)
        assert [t.track_id for t in upd.active] == [tid]


def test_two_objects_get_two_ids_even_when_they_pass_close():
    tracker = IouTracker(min_hits=1, max_age=2)
    ids = set()
    for k in range(12):
        upd = tracker.update([_det(10 + 6 * k, 10), _det(200 - 6 * k, 80)], ts=k)
        ids |= {t.track_id for t in upd.active}
        a, b = sorted(upd.active, key=lambda t: t.box[1])
        assert a.box[1] == 10 and b.box[1] == 80
    assert len(ids) == 2


def test_track_is_lost_after_max_age_and_blips_never_confirm():
    tracker = IouTracker(min_hits=3, max_age=2)
    tracker.update([_det(300, 300)], ts=0)  # a one-frame blip
    for k in range(3):
        tracker.update([_det(10 + 4 * k, 10)], ts=k)
    lost = []
    for k in range(3, 7):
        lost += tracker.update([], ts=k).lost
    assert len(lost) == 1 and lost[0].box[0] == 18 and lost[0].last_ts == 2


def test_fast_mover_matches_by_centre_distance_when_boxes_do_not_overlap():
    tracker = IouTracker(min_hits=1, max_age=1)
    ids = set()
    for k in range(6):  # 90 px car moving 75 px per update: IoU 0.09, below the 0.2 threshold
        upd = tracker.update([_det(75 * k, 50, "vehicle", w=90, h=40)], ts=k)
        ids |= {t.track_id for t in upd.active}
    assert len(ids) == 1
