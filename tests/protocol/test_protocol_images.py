"""Inline thumbnails in up/events: the field, its cap and its checks (protocol.images)."""

import base64
import json

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from protocol import images
from protocol import messages as m
from protocol.errors import MessageError

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(200))
WEBP = b"RIFF\x20\x00\x00\x00WEBPVP8 " + bytes(range(100))


def end_report(thumbnail: str) -> bytes:
    det = {
        "event_id": "ev-1",
        "camera": "gate",
        "label": "person",
        "score": 0.9,
        "bbox": [0.1, 0.2, 0.3, 0.4],
        "start": 1_700_000_000.0,
        "end": 1_700_000_004.0,
        "thumbnail": thumbnail,
    }
    return json.dumps({"v": 1, "id": "m-1", "ts": 1_700_000_005.0, "events": [det]}).encode()


@pytest.mark.parametrize(("data", "content_type"), [(JPEG, "image/jpeg"), (WEBP, "image/webp")])
def test_a_valid_inline_thumbnail_round_trips_in_an_end_report(data, content_type):
    msg = m.make(
        m.Events,
        events=[
            {
                "event_id": "ev-1",
                "camera": "gate",
                "label": "person",
                "score": 0.9,
                "bbox": [0.1, 0.2, 0.3, 0.4],
                "start": 1.0,
                "end": 2.0,
                "thumbnail": images.encode_inline_thumbnail(data),
            }
        ],
    )
    got = m.decode_up("events", m.encode(msg)).events[0]
    assert got.media == [] and images.decode_inline_thumbnail(got.thumbnail) == (data, content_type)


def test_the_cap_is_3_kib_decoded_and_4096_base64_characters():
    assert images.INLINE_THUMBNAIL_MAX_BYTES == 3072 and images.INLINE_THUMBNAIL_MAX_CHARS == 4096
    at_cap = JPEG + b"\x00" * (3072 - len(JPEG))
    encoded = images.encode_inline_thumbnail(at_cap)
    assert len(encoded) == 4096 and images.decode_inline_thumbnail(encoded)[0] == at_cap


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (base64.b64encode(JPEG + b"\x00" * 3000).decode(), "too large"),  # 3212 bytes
        ("A" * 100_000, "too large"),  # refused on its length, before decoding
        ("not base64!", "not base64"),
        (base64.b64encode(JPEG).decode().rstrip("="), "not base64"),  # padding is required
        (base64.b64encode(JPEG).decode()[:-4] + "_-_-", "not base64"),  # the URL-safe alphabet is not
        ("ünïcode", "not base64"),
        ("", "empty"),
        (base64.b64encode(b"GIF89a" + b"\x00" * 50).decode(), "not a JPEG or WebP"),
        (base64.b64encode(b"RIFF\x00\x00\x00\x00WAVEfmt ").decode(), "not a JPEG or WebP"),
    ],
)
def test_a_bad_inline_thumbnail_is_refused_but_not_the_message_around_it(value, detail):
    event = m.decode_up("events", end_report(value)).events[0]  # the schema takes any string
    assert event.end == 1_700_000_004.0
    with pytest.raises(MessageError) as exc:
        images.decode_inline_thumbnail(event.thumbnail)
    assert exc.value.reason == "bad_thumbnail" and detail in exc.value.detail


@pytest.mark.parametrize("data", [b"", JPEG + b"\x00" * 3000, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_the_sender_cannot_encode_what_the_receiver_would_refuse(data):
    assert not images.fits_inline(data)
    with pytest.raises(MessageError) as exc:
        images.encode_inline_thumbnail(data)
    assert exc.value.reason == "bad_thumbnail"


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=3200), magic=st.sampled_from([b"", JPEG[:3], WEBP[:12]]))
def test_any_bytes_decode_back_exactly_iff_they_fit_inline(body, magic):
    data = magic + body
    value = base64.b64encode(data).decode()
    if images.fits_inline(data):
        assert images.decode_inline_thumbnail(value) == (data, images.image_content_type(data))
    else:
        with pytest.raises(MessageError) as exc:
            images.decode_inline_thumbnail(value)
        assert exc.value.reason == "bad_thumbnail"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_decoding_any_text_only_raises_bad_thumbnail(value):
    try:
        data, content_type = images.decode_inline_thumbnail(value)
    except MessageError as exc:
        assert exc.reason == "bad_thumbnail"
    else:
        assert images.fits_inline(data) and content_type in images.INLINE_CONTENT_TYPES


def test_telemetry_samples_leave_out_defaults():
    sample = {"ts": 1_700_000_000.0, "cpu_pct": 12.5, "mem_pct": 40.0, "temp_c": None, "link": "unknown"}
    body = json.loads(
        m.encode(m.make(m.Telemetry, samples=[{**sample, "queue_depth": {}, "bytes_sent": {}}]))
    )
    assert body["samples"] == [{"ts": 1_700_000_000.0, "cpu_pct": 12.5, "mem_pct": 40.0}]
    decoded = m.decode_up("telemetry", json.dumps(body).encode()).samples[0]
    assert (decoded.link, decoded.temp_c, decoded.queue_depth, decoded.bytes_sent) == (
        "unknown",
        None,
        {},
        {},
    )
