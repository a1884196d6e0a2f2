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
