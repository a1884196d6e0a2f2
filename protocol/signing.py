"""Canonical JSON and Ed25519 signatures over it (the signed-document form).

Signed document: {"signed": {...}, "signatures": [{"keyid": hex, "sig": base64}]}.
The signature covers canonical_json(doc["signed"]). keyid = hex sha256 of the
raw 32-byte Ed25519 public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.errors import ManifestError
from protocol.jsonsafe import MAX_DEPTH, MAX_SAFE_INT


def _check(obj: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ManifestError("malformed", "document nested too deep")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ManifestError("malformed", f"non-string key {key!r}")
            _check(value, depth + 1)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _check(value, depth + 1)
    elif isinstance(obj, float):
        # No floats at all (as in OLPC/TUF canonical JSON): their text form differs
        # between languages, which would make the signed bytes ambiguous.
        kind = "NaN/inf" if not math.isfinite(obj) else "float"
        raise ManifestError("malformed", f"{kind} {obj!r} not allowed in a signed document; use int or str")
    elif isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            raise ManifestError("malformed", "string is not valid UTF-8 (lone surrogate)") from None
    elif isinstance(obj, int) and not isinstance(obj, bool):
        if abs(obj) > MAX_SAFE_INT:
            raise ManifestError("malformed", f"integer {obj} is outside the safe range +-(2**53 - 1)")
    elif obj is not None and not isinstance(obj, bool):
        raise ManifestError("malformed", f"{type(obj).__name__} is not a JSON value")


def canonical_json(obj: Any) -> bytes:
    """The one byte form that is signed.

    Object keys sorted by code point, no whitespace (separators "," and ":"),
    UTF-8 with non-ASCII characters written as themselves (not \\u escapes),
    integers only, within +-(2**53 - 1) (floats, NaN and infinity refused),
    strings not normalised.
    Raises ManifestError("malformed") for anything outside that.
    """
    _check(obj, 0)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """Hex sha256 of the raw 32-byte public key."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()


def public_key_to_b64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(raw_public_key(public_key)).decode("ascii")


def public_key_from_b64(value: str) -> Ed25519PublicKey:
    """Parse a base64 raw Ed25519 public key; raises ManifestError("malformed")."""
    try:
        raw = base64.b64decode(value, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ManifestError("malformed", f"bad public key: {exc}") from None


def sign_document(signed: dict[str, Any], *, key: Ed25519PrivateKey) -> dict[str, Any]:
    """Wrap `signed` in a signed document with one signature by `key`."""
    sig = key.sign(canonical_json(signed))
    return {
        "signed": signed,
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(sig).decode("ascii")}],
    }


def add_signature(doc: dict[str, Any], *, key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of `doc` with one more signature (e.g. a key list counter-signed during a root rotation)."""
    extra = sign_document(doc["signed"], key=key)["signatures"]
    return {"signed": doc["signed"], "signatures": [*doc["signatures"], *extra]}


def split_document(doc: Any) -> tuple[dict[str, Any], bytes, list[tuple[str, bytes]]]:
    """(signed part, its canonical bytes, [(keyid, signature bytes)]) or ManifestError("malformed")."""
    if not isinstance(doc, dict) or set(doc) != {"signed", "signatures"}:
        raise ManifestError("malformed", 'a signed document is {"signed": {...}, "signatures": [...]}')
    signed, sigs = doc["signed"], doc["signatures"]
    if not isinstance(signed, dict) or not isinstance(sigs, list) or not 1 <= len(sigs) <= 16:
        raise ManifestError("malformed", "signed must be an object, signatures a list of 1..16")
    body = canonical_json(signed)
    parsed: list[tuple[str, bytes]] = []
    for entry in sigs:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("keyid"), str)
            or not isinstance(entry.get("sig"), str)
        ):
            raise ManifestError("malformed", 'each signature is {"keyid": str, "sig": base64}')
        try:
            parsed.append((entry["keyid"], base64.b64decode(entry["sig"], validate=True)))
        except binascii.Error:
            raise ManifestError("malformed", "signature is not base64") from None
    return signed, body, parsed


def signature_ok(public_key: Ed25519PublicKey, sig: bytes, body: bytes) -> bool:
    try:
        public_key.verify(sig, body)
    except InvalidSignature:
        return False
    return True
