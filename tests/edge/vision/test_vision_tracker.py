from edge.vision.detectors import Detection
from edge.vision.tracker import IouTracker


def _det(x, y, label="person", w=20, h=50):
    return Detection(label, 0.9, (x, y, w, h))


def test_track_keeps_its_id_across_frames_and_is_confirmed_after_min_hits():
    tracker = IouTracker(min_hits=2, max_gap_s=0.5)
    first = tracker.update([_det(10, 10)], ts=0.0)
    assert first.confirmed == [] and first.active == []
    second = tracker.update([_det(14, 10)], ts=0.2)
    assert len(second.confirmed) == 1
    tid = second.confirmed[0].track_id
    for k in range(2, 10):
        upd = tracker.update([_det(10 + 4 * k, 10)], ts=0.2 * k)
        assert [t.track_id for t in upd.active] == [tid]


def test_two_objects_get_two_ids_even_when_they_pass_close():
    tracker = IouTracker(min_hits=1, max_gap_s=0.5)
    ids = set()
    for k in range(12):
        upd = tracker.update([_det(10 + 6 * k, 10), _det(200 - 6 * k, 80)], ts=k)
        ids |= {t.track_id for t in upd.active}
        a, b = sorted(upd.active, key=lambda t: t.box[1])
        assert a.box[1] == 10 and b.box[1] == 80
    assert len(ids) == 2


def test_track_is_lost_after_max_gap_s_and_blips_never_confirm():
    tracker = IouTracker(min_hits=3, max_gap_s=2.5)
    tracker.update([_det(300, 300)], ts=0)  # a one-frame blip
    for k in range(3):
        tracker.update([_det(10 + 4 * k, 10)], ts=k)
    lost = []
    for k in range(3, 7):
        lost += tracker.update([], ts=k).lost
    assert len(lost) == 1 and lost[0].box[0] == 18 and lost[0].last_ts == 2


def test_fast_mover_matches_by_centre_distance_when_boxes_do_not_overlap():
    tracker = IouTracker(min_hits=1, max_gap_s=1.5)
    ids = set()
    for k in range(6):  # 90 px car moving 75 px per update: IoU 0.09, below the 0.2 threshold
        upd = tracker.update([_det(75 * k, 50, "vehicle", w=90, h=40)], ts=k)
        ids |= {t.track_id for t in upd.active}
    assert len(ids) == 1


def test_a_second_box_on_the_same_object_starts_no_track_and_labels_do_not_mix():
    tracker = IouTracker(min_hits=1, max_gap_s=1.0)
    tracker.update([_det(10, 10, w=40, h=100)], ts=0.0)
    # A head box inside the body, and a vehicle on the same spot: the head is absorbed, the
    # vehicle is another object with a track of its own.
    upd = tracker.update(
        [_det(10, 10, w=40, h=100), _det(20, 12, w=15, h=20), _det(10, 10, "vehicle", 40, 100)], ts=0.2
    )
    assert sorted(t.label for t in upd.active) == ["person", "vehicle"]


def test_a_still_track_is_not_given_to_a_neighbour_when_its_object_is_missed():
    tracker = IouTracker(min_hits=1, max_gap_s=2.0)
    for k in range(3):
        tracker.update([_det(100, 50, w=40, h=100)], ts=0.2 * k)
    (still,) = tracker.tracks
    # The still person is missed; someone else appears 60 px away: a new track, not a jump.
    upd = tracker.update([_det(160, 50, w=40, h=100)], ts=0.8)
    assert (
        still.box[0] == 100
        and len(tracker.tracks) == 2
        and [t.track_id for t in upd.active] != [still.track_id]
    )
