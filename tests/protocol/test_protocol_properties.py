"""Property tests: parsers and the canonical form hold for any input, not just examples."""

import json

import hypothesis.strategies as st
from hypothesis import given, settings

from protocol import messages, topics
from protocol.errors import ManifestError, MessageError, TopicError
from protocol.jsonsafe import MAX_SAFE_INT
from protocol.signing import canonical_json

device_ids = st.from_regex(r"\A[a-z0-9][a-z0-9-]{2,62}\Z")
FAST = settings(max_examples=200, deadline=None)
NESTED = settings(max_examples=60, deadline=None)  # recursive strategies cost ~30 ms an example here


@FAST
@given(device_id=device_ids, kind=st.sampled_from(topics.UP_KINDS))
def test_parse_up_round_trips(device_id, kind):
    assert topics.parse(topics.up(device_id, kind)) == topics.Topic(
        device_id=device_id, direction="up", kind=kind
    )


@FAST
@given(device_id=device_ids, kind=st.sampled_from(topics.DOWN_KINDS))
def test_parse_down_round_trips(device_id, kind):
    assert topics.parse(topics.down(device_id, kind)).device_id == device_id


@FAST
@given(st.text(max_size=120))
def test_parse_accepts_only_what_the_builders_produce(text):
    try:
        parsed = topics.parse(text)
    except TopicError:
        return
    assert str(parsed) == text


@FAST
@given(payload=st.binary(max_size=512), kind=st.sampled_from(topics.UP_KINDS))
def test_decode_up_only_raises_message_error_on_arbitrary_bytes(payload, kind):
    try:
        messages.decode_up(kind, payload)
    except MessageError as exc:
        assert exc.reason in {"bad_json", "unknown_version", "schema"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)


@NESTED
@given(body=st.dictionaries(st.sampled_from(["v", "id", "ts", "state", "samples", "op", "x"]), json_values),
       kind=st.sampled_from((*topics.DOWN_KINDS, "bogus")))  # fmt: skip
def test_decode_down_only_raises_message_error_on_arbitrary_json(body, kind):
    payload = json.dumps(body).encode()
    try:
        msg = messages.decode_down(kind, payload)
    except MessageError as exc:
        assert exc.reason in {
            "unknown_kind",
            "unknown_version",
            "schema",
            "bad_json",
        }  # json.dumps writes NaN
    else:
        assert messages.kind_of(msg) == ("down", kind)


int_json = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)


@NESTED
@given(st.dictionaries(st.text(max_size=8), int_json, max_size=8), st.randoms())
def test_canonical_json_is_stable_under_key_order(obj, rnd):
    items = list(obj.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    out = canonical_json(shuffled)
    assert out == canonical_json(obj)
    assert json.loads(out) == obj
    assert canonical_json(json.loads(out)) == out  # a fixed point: re-parsing never changes the bytes

    def sorted_pairs(pairs):
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys)
        return dict(pairs)

    json.loads(out, object_pairs_hook=sorted_pairs)


@NESTED
@given(json_values)
def test_canonical_json_never_raises_anything_but_manifest_error(value):
    try:
        canonical_json({"x": value})
    except ManifestError as exc:
        assert exc.reason == "malformed"
