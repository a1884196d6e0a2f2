import json

import msgspec
import pytest

from protocol import messages as m
from protocol.errors import MessageError

SHA = "ab" * 32
CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def sample(**over):
    fields = {"ts": 1_700_000_000.0, "cpu_pct": 12.5, "mem_pct": 40, "link": "wifi"}
    fields.update(over)
    return m.TelemetrySample(**fields)


def detection(**over):
    fields = {
        "event_id": "ev-1",
        "camera": "front",
        "label": "person",
        "score": 0.9,
        "bbox": (0.1, 0.2, 0.3, 0.4),
        "start": 1_700_000_000.0,
        "media": [m.MediaRef(kind="snapshot", sha256=SHA)],
    }
    fields.update(over)
    return m.Detection(**fields)


# One valid message per (direction, kind, variant), built through make().
VALID = {
    ("up", "status", "online"): lambda: m.make(
        m.Status, state="online", agent_version="1.4.0", model_version="det@3", hardware_model="cam-x1"
    ),
    ("up", "status", "last_will"): lambda: m.make(
        m.Status, state="offline", reason="connection_lost", agent_version="1.4.0"
    ),
    ("up", "telemetry", ""): lambda: m.make(
        m.Telemetry,
        samples=[sample(queue_depth={"clip": 3, "alert": 0}, bytes_sent={"telemetry": 1200}, temp_c=51.0)],
    ),
    ("up", "events", ""): lambda: m.make(
        m.Events, events=[detection(), detection(event_id="ev-2", end=1.7e9)]
    ),
    ("up", "ota", ""): lambda: m.make(
        m.OtaReport, deployment_id="dep-1", serial=7, model="det", state="downloading", progress=0.5
    ),
    ("up", "media", "request"): lambda: m.make(
        m.MediaRequest,
        request_id="rq-1",
        event_id="ev-1",
        kind="clip",
        size=5_000_000,
        sha256=SHA,
        content_type="video/mp4",
    ),
    ("up", "media", "complete"): lambda: m.make(
        m.MediaComplete, request_id="rq-1", parts=[m.UploadedPart(number=1, etag='"e1"')]
    ),
    ("up", "ack", ""): lambda: m.make(m.Ack, command_id="c-1", status="succeeded", result={"uptime": 3}),
    ("up", "cert", ""): lambda: m.make(m.CertRequest, request_id="cr-1", csr_pem=CSR),
    ("down", "config", ""): lambda: m.make(
        m.Config,
        revision=4,
        config=m.DeviceConfig(
            bandwidth=m.BandwidthPolicy(
                max_kbps=256,
                daily_budget_mb=50,
                classes_allowed=["alert", "event", "telemetry"],
                class_priority=["alert", "event"],
                quiet_hours=("22:00", "06:30"),
                metered=True,
            )
        ),
    ),
    ("down", "ota", ""): lambda: m.make(
        m.OtaOffer, deployment_id="dep-1", manifest={"signed": {}, "signatures": []}, keylist={"signed": {}}
    ),
    ("down", "cmd", ""): lambda: m.make(
        m.Command, command_id="c-1", name="set_log_level", args={"level": "debug"}, expires=1.8e9
    ),
    ("down", "media", "granted"): lambda: m.make(
        m.MediaGranted,
        request_id="rq-1",
        upload_id="up-1",
        part_size=8 * 1024 * 1024,
        parts=[m.PartUrl(number=1, url="https://s3.local/b/k?partNumber=1&sig=x")],
        expires=1.8e9,
    ),
    ("down", "media", "refused"): lambda: m.make(
        m.MediaRefused, request_id="rq-1", error="quota_exceeded", detail="daily media quota"
    ),
    ("down", "cert", "issued"): lambda: m.make(
        m.CertIssued, request_id="cr-1", certificate_pem=CERT, ca_pem=CERT
    ),
    ("down", "cert", "refused"): lambda: m.make(m.CertRefused, request_id="cr-1", error="revoked"),
}


@pytest.mark.parametrize("key", list(VALID), ids=["/".join(filter(None, k)) for k in VALID])
def test_every_valid_message_round_trips(key):
    direction, kind, _ = key
    msg = VALID[key]()
    decode = m.decode_up if direction == "up" else m.decode_down
    assert decode(kind, m.encode(msg)) == msg
    assert m.kind_of(msg) == (direction, kind)
    body = json.loads(m.encode(msg))
    assert body["v"] == 1 and 1 <= len(body["id"]) <= 64 and isinstance(body["ts"], float)


def test_every_kind_has_a_valid_example():
    from protocol import topics

    covered = {(d, k) for d, k, _ in VALID}
    assert covered == {("up", k) for k in topics.UP_KINDS} | {("down", k) for k in topics.DOWN_KINDS}


def test_make_fills_unique_ids():
    ids = {m.make(m.Status, state="online", agent_version="1").id for _ in range(100)}
    assert len(ids) == 100


def _payload(key, **changes):
    body = json.loads(m.encode(VALID[key]()))
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        if value is KeyError:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(body).encode()


INVALID = [
    (("up", "status", "online"), {"state": "sleeping"}, "$.state"),
    (("up", "status", "online"), {"agent_version": KeyError}, "agent_version"),
    (("up", "status", "online"), {"uptime_s": -1}, "$.uptime_s"),
    (("up", "telemetry", ""), {"samples": []}, "$.samples"),
    (("up", "telemetry", ""), {"samples__0__cpu_pct": 101}, "$.samples[0].cpu_pct"),
    (("up", "telemetry", ""), {"samples__0__link": "carrier-pigeon"}, "$.samples[0].link"),
    (("up", "telemetry", ""), {"samples__0__queue_depth": {"video": 1}}, "queue_depth"),
    (("up", "telemetry", ""), {"samples__0__bytes_sent": {"clip": -5}}, "bytes_sent"),
    (("up", "events", ""), {"events__0__score": 1.5}, "$.events[0].score"),
    (("up", "events", ""), {"events__0__bbox": [0.1, 0.2, 0.3]}, "$.events[0].bbox"),
    (("up", "events", ""), {"events__0__bbox": [0.8, 0.2, 0.3, 0.1]}, "inside the frame"),
    (("up", "events", ""), {"events__0__media__0__kind": "gif"}, "$.events[0].media[0].kind"),
    (("up", "events", ""), {"events__0__media__0__sha256": "XYZ"}, "sha256"),
    (("up", "ota", ""), {"state": "pending"}, "$.state"),  # server-only state
    (("up", "ota", ""), {"progress": 2}, "$.progress"),
    (("up", "ota", ""), {"serial": "7"}, "$.serial"),
    (("up", "media", "request"), {"size": 0}, "$.size"),
    (("up", "media", "request"), {"op": "delete"}, "op"),
    (("up", "media", "request"), {"sha256": SHA.upper()}, "$.sha256"),
    (("up", "media", "complete"), {"parts": []}, "$.parts"),
    (
        ("up", "media", "complete"),
        {"parts": [{"number": 2, "etag": "a"}, {"number": 1, "etag": "b"}]},
        "order",
    ),
    (("up", "ack", ""), {"status": "maybe"}, "$.status"),
    (("up", "cert", ""), {"csr_pem": "not a pem"}, "csr_pem"),
    (("up", "cert", ""), {"csr_pem": "x" * 20000}, "$.csr_pem"),
    (("down", "config", ""), {"config__bandwidth__max_kbps": 0}, "max_kbps"),
    (("down", "config", ""), {"config__detection__thumbnail_max_side": 8}, "thumbnail_max_side"),
    (("down", "config", ""), {"config__detection__thumbnail_quality": 101}, "thumbnail_quality"),
    (("down", "config", ""), {"config__detection__thumbnail_quality": 60.5}, "thumbnail_quality"),
    (("down", "config", ""), {"config__detection__clip_labels": "person"}, "clip_labels"),
    (("down", "config", ""), {"config__detection__clip_keep": "yes"}, "clip_keep"),
    (("down", "config", ""), {"config__detection__thumbnail_format": "gif"}, "thumbnail_format"),
    (("down", "config", ""), {"config__bandwidth__class_priority": ["alert", "alert"]}, "duplicates"),
    (("down", "config", ""), {"config__bandwidth__quiet_hours": ["25:00", "06:00"]}, "quiet_hours"),
    (("down", "config", ""), {"config__bandwidth__classes_allowed": ["spam"]}, "classes_allowed"),
    (("down", "ota", ""), {"manifest": "signed"}, "$.manifest"),
    (("down", "cmd", ""), {"name": "format_disk"}, "$.name"),
    (("down", "cmd", ""), {"args": {"level": "loud"}}, "level"),
    (("down", "cmd", ""), {"name": "upload_clip", "args": {}}, "event_id"),
    (("down", "cmd", ""), {"name": "upload_clip", "args": {"event_id": "a/b"}}, "event_id"),
    (("down", "cmd", ""), {"name": "upload_clip", "args": {"event_id": 7}}, "event_id"),
    (("down", "cmd", ""), {"expires": KeyError}, "expires"),
    (("down", "media", "granted"), {"parts__0__url": "ftp://x"}, "url"),
    (("down", "media", "granted"), {"parts__0__number": 0}, "number"),
    (("down", "media", "refused"), {"error": ""}, "$.error"),
    (("down", "cert", "issued"), {"ca_pem": CSR}, "ca_pem"),
]


@pytest.mark.parametrize(("key", "changes", "where"), INVALID)
def test_schema_violations_name_the_field(key, changes, where):
    direction, kind, _ = key
    decode = m.decode_up if direction == "up" else m.decode_down
    with pytest.raises(MessageError) as exc:
        decode(kind, _payload(key, **changes))
    assert exc.value.reason == "schema"
    assert where in exc.value.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "bad_json"),
        (b"{", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b'{"v": 1', "bad_json"),
        (b"{}", "unknown_version"),
        (b'{"v": 2, "id": "x", "ts": 1}', "unknown_version"),
        (b'{"v": "1"}', "unknown_version"),
        (b'{"v": true}', "unknown_version"),
        (b"[1, 2]", "schema"),
        (b'"status"', "schema"),
        (b'{"v": 1, "id": "", "ts": 1, "state": "online", "agent_version": "1"}', "schema"),
        (b'{"v": 1, "id": "a/b", "ts": 1, "state": "online", "agent_version": "1"}', "schema"),
        (b'{"v": 1, "id": "x", "ts": -5, "state": "online", "agent_version": "1"}', "schema"),
        (b'{"v": 1, "id": "x", "ts": 1e400, "state": "online", "agent_version": "1"}', "schema"),
    ],
)
def test_envelope_refusals(payload, reason):
    with pytest.raises(MessageError) as exc:
        m.decode_up("status", payload)
    assert exc.value.reason == reason


def test_oversize_is_refused_before_parsing():
    # Not even JSON: the size check must come first.
    with pytest.raises(MessageError) as exc:
        m.decode_up("telemetry", b"x" * (m.MAX_PAYLOAD_BYTES + 1))
    assert exc.value.reason == "oversize"


def test_encode_refuses_oversize_messages():
    samples = [sample(queue_depth={c: 10**9 for c in m.UPLINK_CLASSES}) for _ in range(500)]
    big = m.Ack(v=1, id="x", ts=1.0, command_id="c", status="succeeded", result={"blob": "x" * 300_000})
    with pytest.raises(MessageError) as exc:
        m.encode(big)
    assert exc.value.reason == "oversize"
    # A full telemetry batch stays under the limit.
    assert len(m.encode(m.make(m.Telemetry, samples=samples))) < m.MAX_PAYLOAD_BYTES


def test_deep_nesting_in_free_form_fields_is_a_message_error():
    payload = b'{"v":1,"id":"a","ts":1,"command_id":"c","status":"failed","result":{"a":' + b"[" * 5000
    payload += b"]" * 5000 + b"}}"
    with pytest.raises(MessageError) as exc:
        m.decode_up("ack", payload)
    assert exc.value.reason in {"bad_json", "schema"}


def test_unknown_kind_is_refused():
    with pytest.raises(MessageError) as exc:
        m.decode_up("config", b"{}")
    assert exc.value.reason == "unknown_kind"


def test_unknown_fields_are_ignored_for_forward_compatibility():
    body = json.loads(m.encode(VALID[("up", "status", "online")]()))
    body["battery_pct"] = 80
    assert m.decode_up("status", json.dumps(body).encode()).state == "online"


def test_make_refuses_invalid_fields():
    with pytest.raises(MessageError) as exc:
        m.make(m.OtaReport, deployment_id="d", serial=1, model="x", state="downloading", progress=3.0)
    assert exc.value.reason == "schema"
    with pytest.raises(MessageError):
        m.make(m.Status, state="online")  # agent_version missing


def test_messages_are_frozen():
    msg = VALID[("up", "status", "online")]()
    with pytest.raises(AttributeError):
        msg.state = "offline"


def test_ota_state_vocabulary():
    assert m.OTA_STATES[0] == "pending" and len(m.OTA_STATES) == 12
    assert set(m.OTA_DEVICE_STATES) < set(m.OTA_STATES)
    assert sorted(m.OTA_TERMINAL_STATES) == ["cancelled", "failed", "rolled_back", "succeeded", "timed_out"]
    assert m.UPLINK_CLASSES == ("alert", "event", "thumbnail", "telemetry", "clip")
    assert msgspec.json.decode(m.encode(VALID[("down", "config", "")]()))["config"]["bandwidth"]["metered"]


ADDED_DETECTION_FIELDS = (
    "thumbnail_max_side",
    "thumbnail_format",
    "thumbnail_quality",
    "clip_labels",
    "clip_keep",
)


def test_detection_settings_added_fields_are_optional_with_defaults():
    # A server that predates thumbnail_*, clip_labels and clip_keep sends a config without them:
    # thumbnails of 96 px WebP, clips kept on the device and none uploaded unasked.
    body = json.loads(m.encode(VALID[("down", "config", "")]()))
    for key in ADDED_DETECTION_FIELDS:
        body["config"]["detection"].pop(key, None)
    det = m.decode_down("config", json.dumps(body).encode()).config.detection
    assert tuple(getattr(det, k) for k in ADDED_DETECTION_FIELDS) == (96, "webp", 65, [], True)
    body["config"]["detection"] |= {
        "thumbnail_max_side": 128,
        "thumbnail_format": "jpeg",
        "thumbnail_quality": 70,
        "clip_labels": None,
        "clip_keep": False,
    }
    det = m.decode_down("config", json.dumps(body).encode()).config.detection
    assert tuple(getattr(det, k) for k in ADDED_DETECTION_FIELDS) == (128, "jpeg", 70, None, False)


def test_event_start_leaves_out_empty_fields_and_round_trips():
    start = detection(media=[])
    body = json.loads(m.encode(m.make(m.Events, events=[start])))
    assert set(body["events"][0]) == {"event_id", "camera", "label", "score", "bbox", "start"}
    assert m.decode_up("events", m.encode(m.make(m.Events, events=[start]))).events == [start]
    end = detection(end=1_700_000_003.5, zone="door")
    body = json.loads(m.encode(m.make(m.Events, events=[end])))
    assert body["events"][0]["end"] == 1_700_000_003.5 and body["events"][0]["zone"] == "door"
    assert body["events"][0]["media"] == [{"kind": "snapshot", "sha256": SHA}]


def test_make_stamps_ts_to_the_millisecond():
    ts = m.make(m.Status, state="online", agent_version="1").ts
    assert ts == round(ts, 3)
