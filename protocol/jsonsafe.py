"""JSON that means one thing to every reader and fits every column: the bounds all parsers share.

- Duplicate object keys are refused: parsers disagree on which one wins (msgspec and Python keep
  the last, others the first), so a signed manifest with two "serial" keys would mean two things.
- Integers stay inside the I-JSON safe range (RFC 7493, +-(2**53 - 1)): beyond it JavaScript and
  many JSON libraries round, and one huge release serial would burn every anti-rollback floor.
- Free-form values (command args, ack results, manifests, API bodies) nest at most MAX_DEPTH
  deep: a 100,000-deep body must be a clear refusal, not a RecursionError in whichever layer
  walks it next. (Typed message fields are bounded by their schema; the decoders refuse
  anything deeper than the interpreter's recursion limit.)
- Text holds no NUL: PostgreSQL text and jsonb cannot store it (lone surrogates are refused by
  the decoders already: msgspec rejects them, and the API parser checks for them).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 32

# A JSON string, and whether a colon follows it (then it is an object key). Every string is
# consumed whole, left to right, so a quote inside a string never starts a match; outside
# strings valid JSON has no quotes, so the scan always lands on an opening one.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"[ \t\r\n]*(:?)', re.DOTALL)
_SPACED_COLON = re.compile(rb'"[ \t\r\n]+:')
_ENCODE = msgspec.json.Encoder().encode


def _exact_keys(text: bytes) -> int:
    return _STRING.findall(text).count(b":")


def _quote_colons(text: bytes) -> int:
    # A quote then a colon: each key's end, and each string value that starts with a colon.
    count = text.count(b'":')
    if b" :" in text or b"\t:" in text or b"\n:" in text or b"\r:" in text:
        count += len(_SPACED_COLON.findall(text))
    return count


def check_keys(payload: bytes, decoded: Any) -> None:
    """Raise ValueError if valid JSON `payload` repeats a key in some object.

    `decoded` is its untyped decode, which kept one entry per key: re-encoded, it writes fewer
    keys exactly when the text repeated one. Without any escape in either text, counting quotes
    followed by a colon (in C) compares them just as well, since both texts hold the same strings:
    that is what keeps this check cheap on the ingest's hot path.
    """
    encoded = _ENCODE(decoded)
    count = _exact_keys if b"\\" in payload or b"\\" in encoded else _quote_colons
    if count(payload) != count(encoded):
        raise ValueError("an object repeats a key")


def nul_path(value: Any) -> str | None:
    """Where the first string (value or key) holding a NUL is, as a JSON path; None if none does.

    Iterative, so a document as deep as the decoder allows cannot exhaust the stack here.
    """
    stack = [("$", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return f"{path} (a key)"
                stack.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def check_value(value: Any, field: str, depth: int = 0) -> None:
    """Raise ValueError unless free-form JSON `value` is within the bounds above (finite floats too)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{field} nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise ValueError(f"{field} has a key with a NUL character")
            check_value(item, f"{field}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_value(item, f"{field}[{i}]", depth + 1)
    elif isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{field} contains a NUL character")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INT:
        raise ValueError(f"{field} is outside the safe integer range +-(2**53 - 1)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{field} is not a finite number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"an object repeats the key {repeated!r}")
    return obj


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """Parse JSON for the paths that are not hot (API bodies, key lists from files): everything above
    is refused with a ValueError naming what, before anyone reads the value."""
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    check_value(value, "$")
    return value
