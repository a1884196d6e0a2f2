"""Release manifests and key lists: TUF/Uptane-style verification shared by server and agent.

Trust chain: an offline ROOT key (pinned on the device at manufacture) signs a
key list; the key list names the release keys (and revokes old ones); a release
key signs each release manifest. Every check refuses with its own reason code
(protocol.errors.ManifestError); docs/protocol.md lists them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.download import DownloadVerifier
from protocol.errors import ManifestError
from protocol.jsonsafe import MAX_SAFE_INT
from protocol.signing import (
    canonical_json,
    key_id,
    public_key_from_b64,
    sign_document,
    signature_ok,
    split_document,
)

__all__ = [
    "DownloadVerifier",
    "KeyEntry",
    "KeyList",
    "Manifest",
    "canonical_json",
    "keylist_signed",
    "parse_time",
    "release_signed",
    "sign_document",
    "verify_keylist",
    "verify_manifest",
    "version_tuple",
]

_VERSION = re.compile(r"^(\d+(?:\.\d+)*)")

Time = int | Annotated[str, msgspec.Meta(max_length=40)]
KeyId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
# Serials, versions and sizes stay in the I-JSON safe range (protocol.jsonsafe): a serial of
# 2**70 would otherwise burn every device's anti-rollback floor for good.
Counter = Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE_INT)]


class _KeySpec(msgspec.Struct, frozen=True):
    public: str
    revoked: bool = False


class _KeyListSigned(msgspec.Struct, frozen=True):
    type: Literal["keylist"]
    version: Counter
    expires: Time
    keys: Annotated[dict[KeyId, _KeySpec], msgspec.Meta(min_length=1, max_length=64)]


class _ReleaseSigned(msgspec.Struct, frozen=True):
    type: Literal["release"]
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    serial: Counter
    artifact_url: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    size: Counter
    hardware_models: Annotated[list[str], msgspec.Meta(min_length=1, max_length=256)]
    min_agent_version: Annotated[str, msgspec.Meta(pattern=r"^\d+(\.\d+)*$", max_length=64)]
    created: Time
    expires: Time


@dataclass(frozen=True, slots=True)
class KeyEntry:
    public_key: Ed25519PublicKey
    revoked: bool


@dataclass(frozen=True, slots=True)
class KeyList:
    """A verified key list. `document` is the signed document as received, for storing."""

    version: int
    expires: float
    keys: dict[str, KeyEntry]
    digest: str  # hex sha256 of the canonical signed part
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A verified release manifest."""

    model: str
    version: str
    serial: int
    artifact_url: str
    sha256: str
    size: int
    hardware_models: tuple[str, ...]
    min_agent_version: str
    created: float
    expires: float
    keyid: str  # the release key that signed it
    digest: str


def parse_time(value: int | float | str | datetime) -> float:
    """Unix seconds from an int/float, an aware datetime or ISO 8601 ("Z" or an offset; naive = UTC)."""
    if isinstance(value, bool):
        raise ManifestError("malformed", "time must be a number or ISO 8601 string")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ManifestError("malformed", f"bad ISO 8601 time {value!r}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise ManifestError("malformed", "time must be a number or ISO 8601 string")


def version_tuple(version: str) -> tuple[int, ...]:
    """Dotted version compared numerically ("1.10" > "1.9"); a trailing suffix ("-dev") is ignored.

    Trailing zeros are dropped so "1.2" == "1.2.0". A string without a leading number is (0,).
    """
    match = _VERSION.match(version.strip()) if isinstance(version, str) else None
    if match is None:
        return (0,)
    parts = [int(p) for p in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _convert(signed: dict[str, Any], tp: type, what: str) -> Any:
    try:
        return msgspec.convert(signed, tp, strict=True)
    except msgspec.ValidationError as exc:
        raise ManifestError("malformed", f"{what}: {exc}") from None


def verify_keylist(
    doc: Any,
    *,
    root_public_key: Ed25519PublicKey,
    current_version: int | None,
    now: float | datetime,
) -> KeyList:
    """Verify a key list signed by the pinned root key.

    Refuses (reason): not a signed document (malformed), no signature by the root
    key (keylist_not_root_signed), a root signature that does not verify
    (bad_signature), a bad body (malformed), expired (expired), a version lower
    than `current_version` (keylist_rollback). An EQUAL version is accepted as a
    re-delivery (down/ota is retained and resent with every offer) and the caller
    keeps the list it already stores: a same-version list never replaces a stored
    one, so a root-signed list can only be replaced by a higher version.
    """
    signed, body, sigs = split_document(doc)
    root_id = key_id(root_public_key)
    root_sigs = [sig for kid, sig in sigs if kid == root_id]
    if not root_sigs:
        raise ManifestError("keylist_not_root_signed", "no signature by the pinned root key")
    if not any(signature_ok(root_public_key, sig, body) for sig in root_sigs):
        raise ManifestError("bad_signature", "root signature does not verify")
    parsed: _KeyListSigned = _convert(signed, _KeyListSigned, "keylist")
    keys: dict[str, KeyEntry] = {}
    for kid, spec in parsed.keys.items():
        public_key = public_key_from_b64(spec.public)
        if key_id(public_key) != kid:
            raise ManifestError("malformed", f"keyid {kid[:12]}… is not the sha256 of its public key")
        keys[kid] = KeyEntry(public_key=public_key, revoked=spec.revoked)
    expires = parse_time(parsed.expires)
    if parse_time(now) >= expires:
        raise ManifestError("expired", f"key list v{parsed.version} expired")
    if current_version is not None and parsed.version < current_version:
        raise ManifestError(
            "keylist_rollback", f"key list v{parsed.version} is older than installed v{current_version}"
        )
    return KeyList(
        version=parsed.version,
        expires=expires,
        keys=keys,
        digest=hashlib.sha256(body).hexdigest(),
        document=doc,
    )


def _release_signer(keylist: KeyList, sigs: list[tuple[str, bytes]], body: bytes) -> str:
    known = [(kid, sig) for kid, sig in sigs if kid in keylist.keys]
    if not known:
        raise ManifestError("unknown_key", "signed by no key in the key list")
    revoked = False
    for kid, sig in known:
        entry = keylist.keys[kid]
        if entry.revoked:
            revoked = True
        elif signature_ok(entry.public_key, sig, body):
            return kid
    if revoked and all(keylist.keys[kid].revoked for kid, _ in known):
        raise ManifestError("revoked_key", "signed only by revoked keys")
    raise ManifestError("bad_signature", "release signature does not verify")


def verify_manifest(
    doc: Any,
    *,
    keylist: KeyList,
    installed_serial: int | None,
    hardware_model: str,
    agent_version: str,
    now: float | datetime,
) -> Manifest:
    """Verify a release manifest against a verified key list, for one device.

    Checks, in order: document shape (malformed), signer known (unknown_key),
    not revoked (revoked_key), signature (bad_signature), body (malformed), key
    list and manifest not expired (expired), serial strictly above the installed
    one (rollback), device hardware listed (incompatible_hardware), agent at least
    min_agent_version (agent_too_old).
    """
    signed, body, sigs = split_document(doc)
    signer = _release_signer(keylist, sigs, body)
    rel: _ReleaseSigned = _convert(signed, _ReleaseSigned, "release")
    now_s = parse_time(now)
    created, expires = parse_time(rel.created), parse_time(rel.expires)
    if now_s >= keylist.expires:
        raise ManifestError("expired", f"key list v{keylist.version} expired")
    if now_s >= expires:
        raise ManifestError("expired", f"manifest serial {rel.serial} expired")
    if installed_serial is not None and rel.serial <= installed_serial:
        raise ManifestError("rollback", f"serial {rel.serial} <= installed {installed_serial}")
    if hardware_model not in rel.hardware_models:
        raise ManifestError("incompatible_hardware", f"{hardware_model!r} not in {rel.hardware_models}")
    if version_tuple(agent_version) < version_tuple(rel.min_agent_version):
        raise ManifestError("agent_too_old", f"agent {agent_version} < required {rel.min_agent_version}")
    return Manifest(
        model=rel.model,
        version=rel.version,
        serial=rel.serial,
        artifact_url=rel.artifact_url,
        sha256=rel.sha256,
        size=rel.size,
        hardware_models=tuple(rel.hardware_models),
        min_agent_version=rel.min_agent_version,
        created=created,
        expires=expires,
        keyid=signer,
        digest=hashlib.sha256(body).hexdigest(),
    )


def keylist_signed(*, version: int, expires: int | str, keys: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    """The signed part of a key list from {keyid: (public_b64, revoked)}; checked like a received one."""
    signed = {
        "type": "keylist",
        "version": version,
        "expires": expires,
        "keys": {kid: {"public": pub, "revoked": revoked} for kid, (pub, revoked) in keys.items()},
    }
    _convert(signed, _KeyListSigned, "keylist")
    canonical_json(signed)
    return signed


def release_signed(
    *,
    model: str,
    version: str,
    serial: int,
    artifact_url: str,
    sha256: str,
    size: int,
    hardware_models: list[str],
    min_agent_version: str,
    created: int | str,
    expires: int | str,
) -> dict[str, Any]:
    """The signed part of a release manifest; checked like a received one."""
    signed = {
        "type": "release",
        "model": model,
        "version": version,
        "serial": serial,
        "artifact_url": artifact_url,
        "sha256": sha256,
        "size": size,
        "hardware_models": list(hardware_models),
        "min_agent_version": min_agent_version,
        "created": created,
        "expires": expires,
    }
    _convert(signed, _ReleaseSigned, "release")
    canonical_json(signed)
    return signed
