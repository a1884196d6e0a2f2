"""The attacks on the decoders (issue 12): invalid UTF-8, unstorable text, repeated keys, huge integers,
deep nesting. Each is refused with its reason by the codec that the ingest and the agent both use."""

import json

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from protocol import jsonsafe
from protocol import messages as m
from protocol.errors import MessageError
from tests.protocol.test_protocol_messages import VALID

FAST = settings(max_examples=300, deadline=None)
UP_KEYS = [k for k in VALID if k[0] == "up"]


def decode(key, payload: bytes):
    direction, kind, _ = key
    return (m.decode_up if direction == "up" else m.decode_down)(kind, payload)


def reason_of(key, payload: bytes) -> str:
    with pytest.raises(MessageError) as exc:
        decode(key, payload)
    return exc.value.reason


def string_paths(value, path=()):
    """Paths of every string value in a decoded document."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from string_paths(item, (*path, i))


def replaced(body, path, value):
    body = json.loads(json.dumps(body))
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


# -- invalid UTF-8 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(VALID), ids=["/".join(filter(None, k)) for k in VALID])
def test_invalid_utf8_inside_a_string_is_bad_json(key):
    body = m.encode(VALID[key]())
    poisoned = body.replace(b'"id":"', b'"id":"\xff\xfe', 1)
    assert reason_of(key, poisoned) == "bad_json"


@FAST
@given(junk=st.binary(max_size=64), key=st.sampled_from(list(VALID)))
def test_arbitrary_bytes_inside_a_valid_message_raise_only_message_errors(junk, key):
    # Random bytes alone are almost never JSON; spliced into a real message they reach every
    # layer of the decoder: strings with invalid UTF-8, control bytes, escapes, quotes.
    body = m.encode(VALID[key]())
    cut = body.index(b'"id":"') + 6
    try:
        decode(key, body[:cut] + junk + body[cut:])
    except MessageError as exc:
        assert exc.reason in {"bad_json", "unknown_version", "schema"}


# -- text the database cannot store -----------------------------------------------------------------


@pytest.mark.parametrize("key", UP_KEYS, ids=["/".join(filter(None, k)) for k in UP_KEYS])
def test_a_nul_in_any_text_field_a_device_sends_is_a_schema_refusal(key):
    body = json.loads(m.encode(VALID[key]()))
    paths = list(string_paths(body))
    assert paths
    for path in paths:
        payload = json.dumps(replaced(body, path, "a\u0000b")).encode()
        with pytest.raises(MessageError) as exc:
            decode(key, payload)
        assert exc.value.reason == "schema" and "NUL" in exc.value.detail, path


def test_a_nul_in_a_free_form_key_or_an_unknown_field_is_refused_too():
    ack = json.loads(m.encode(VALID["up", "ack", ""]()))
    for changed in ({**ack, "result": {"a\u0000": 1}}, {**ack, "extra": ["\u0000"]}):
        assert reason_of(("up", "ack", ""), json.dumps(changed).encode()) == "schema"


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    ack = json.loads(m.encode(VALID["up", "ack", ""]()))
    text = "C:\\u0000 is a path, not a NUL"
    msg = decode(("up", "ack", ""), json.dumps({**ack, "detail": text}).encode())
    assert msg.detail == text


# -- repeated keys ------------------------------------------------------------------------------------


def test_a_manifest_with_two_serials_is_refused_on_the_device():
    offer = (
        b'{"v":1,"id":"o-1","ts":1,"deployment_id":"7","keylist":{"signed":{}},'
        b'"manifest":{"signed":{"serial":99,"serial":10},"signatures":[]}}'
    )
    assert reason_of(("down", "ota", ""), offer) == "bad_json"
    twice = b'{"v":1,"id":"o-1","ts":1,"deployment_id":"7","keylist":{},"manifest":{},"manifest":{}}'
    assert reason_of(("down", "ota", ""), twice) == "bad_json"


@pytest.mark.parametrize("key", list(VALID), ids=["/".join(filter(None, k)) for k in VALID])
def test_a_repeated_key_at_any_level_of_any_message_is_refused(key):
    body = m.encode(VALID[key]())
    # Repeat the first key of every object in turn (the text after each "{").
    starts = [i for i, c in enumerate(body) if c == ord("{") and body[i + 1 : i + 2] == b'"']
    assert starts
    for start in starts:
        key_end = body.index(b'":', start) + 2
        twice = body[: start + 1] + body[start + 1 : key_end] + b"null," + body[start + 1 :]
        assert reason_of(key, twice) == "bad_json", twice


def _object_pairs_hook_finds_a_repeat(text: str) -> bool:
    repeated = []

    def hook(pairs):
        keys = [k for k, _ in pairs]
        repeated.append(len(keys) != len(set(keys)))
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return any(repeated)


json_keys = st.sampled_from(["a", "b", ":", " :x", '"', "\\", "é", "\u2028", "\\u0041"]) | st.text(max_size=4)
json_docs = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=6) | json_keys,
    lambda inner: st.lists(inner, max_size=4) | st.lists(st.tuples(json_keys, inner), max_size=4),
    max_leaves=16,
)


def _render(doc, rnd_space: str, ascii_only: bool) -> str:
    """JSON text of `doc`, where a list of (key, value) pairs is an object that may repeat keys."""
    if isinstance(doc, list) and doc and all(isinstance(p, tuple) for p in doc):
        items = (
            f"{json.dumps(k, ensure_ascii=ascii_only)}{rnd_space}:{_render(v, rnd_space, ascii_only)}"
            for k, v in doc
        )
        return "{" + ",".join(items) + "}"
    if isinstance(doc, list):
        return "[" + ",".join(_render(v, rnd_space, ascii_only) for v in doc) + "]"
    return json.dumps(doc, ensure_ascii=ascii_only)


@settings(max_examples=500, deadline=None)
@given(doc=json_docs, space=st.sampled_from(["", " ", "\n\t"]), ascii_only=st.booleans())
def test_the_repeated_key_check_agrees_with_a_pair_keeping_parser(doc, space, ascii_only):
    import msgspec

    text = _render(doc, space, ascii_only)
    payload = text.encode()
    try:
        jsonsafe.check_keys(payload, msgspec.json.decode(payload))
        found = False
    except ValueError:
        found = True
    assert found == _object_pairs_hook_finds_a_repeat(text), text


# -- integers and nesting -----------------------------------------------------------------------------


def test_integers_beyond_the_safe_range_are_refused_in_typed_and_free_form_fields():
    report = json.loads(m.encode(VALID["up", "ota", ""]()))
    assert reason_of(("up", "ota", ""), json.dumps({**report, "serial": 2**70}).encode()) == "schema"
    assert decode(("up", "ota", ""), json.dumps({**report, "serial": 2**53 - 1}).encode()).serial == 2**53 - 1
    ack = json.loads(m.encode(VALID["up", "ack", ""]()))
    assert reason_of(("up", "ack", ""), json.dumps({**ack, "result": {"n": 2**53}}).encode()) == "schema"
    huge = json.dumps({**ack, "result": {"n": 1}}).encode().replace(b'"n": 1', b'"n": 1e400')
    assert reason_of(("up", "ack", ""), huge) == "schema"


@pytest.mark.parametrize("depth", [jsonsafe.MAX_DEPTH + 1, 500, 100_000])
def test_free_form_fields_nest_at_most_max_depth(depth):
    ack = m.encode(VALID["up", "ack", ""]())
    deep = ack.replace(b'"result":{"uptime":3}', b'"result":{"a":' + b"[" * depth + b"]" * depth + b"}")
    assert reason_of(("up", "ack", ""), deep) in {"bad_json", "schema"}
    ok = ack.replace(b'"result":{"uptime":3}', b'"result":{"a":' + b"[" * 30 + b"]" * 30 + b"}")
    assert decode(("up", "ack", ""), ok).result == json.loads(ok)["result"]
