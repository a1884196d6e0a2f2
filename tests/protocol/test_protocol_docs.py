"""Every example payload in docs/protocol.md decodes with the protocol package."""

import re
from pathlib import Path

import pytest

from protocol import messages, topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
EXAMPLES = re.findall(r"<!-- example: (up|down)/(\w+) -->\s*```json\n(.*?)```", DOC.read_text(), re.S)


def test_every_kind_has_an_example_in_the_docs():
    assert {(d, k) for d, k, _ in EXAMPLES} == {("up", k) for k in topics.UP_KINDS} | {
        ("down", k) for k in topics.DOWN_KINDS
    }


@pytest.mark.parametrize(("direction", "kind", "body"), EXAMPLES, ids=[f"{d}/{k}" for d, k, _ in EXAMPLES])
def test_doc_example_decodes(direction, kind, body):
    decode = messages.decode_up if direction == "up" else messages.decode_down
    msg = decode(kind, body.encode())
    assert messages.kind_of(msg) == (direction, kind)


def test_inline_thumbnails_in_the_examples_are_what_the_server_accepts():
    from protocol.images import decode_inline_thumbnail

    inline = [
        e.thumbnail
        for d, k, body in EXAMPLES
        if (d, k) == ("up", "events")
        for e in messages.decode_up("events", body.encode()).events
        if e.thumbnail is not None
    ]
    assert inline and all(decode_inline_thumbnail(t)[1] == "image/webp" for t in inline)
