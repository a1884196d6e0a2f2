"""Codec for every message kind: decode_up / decode_down / encode / make.

Decoding order (each refusal has its own reason): size (oversize, before any
parsing) -> JSON (bad_json: not JSON, not UTF-8, a repeated key, nested deeper than
protocol.jsonsafe.MAX_DEPTH) -> envelope "v" (unknown_version) -> text the database
cannot store (schema) -> the kind's schema (schema, with the field path in the detail).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, TypeVar

import msgspec

from protocol import PROTOCOL_VERSION, jsonsafe
from protocol._base import MAX_PAYLOAD_BYTES, Frozen, Message
from protocol.down import (
    BandwidthPolicy,
    CertIssued,
    CertRefused,
    Command,
    Config,
    DetectionSettings,
    DeviceConfig,
    MediaGranted,
    MediaRefused,
    OtaOffer,
    PartUrl,
)
from protocol.errors import MessageError
from protocol.up import (
    Ack,
    CertRequest,
    Detection,
    Events,
    MediaComplete,
    MediaRef,
    MediaRequest,
    OtaReport,
    Status,
    Telemetry,
    TelemetrySample,
    UploadedPart,
)
from protocol.vocab import (
    OTA_DEVICE_STATES,
    OTA_STATES,
    OTA_TERMINAL_STATES,
    UPLINK_CLASSES,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "OTA_DEVICE_STATES",
    "OTA_STATES",
    "OTA_TERMINAL_STATES",
    "UPLINK_CLASSES",
    "Ack",
    "BandwidthPolicy",
    "CertIssued",
    "CertRefused",
    "CertRequest",
    "Command",
    "Config",
    "Detection",
    "DetectionSettings",
    "DeviceConfig",
    "Events",
    "Frozen",
    "MediaComplete",
    "MediaGranted",
    "MediaRef",
    "MediaRefused",
    "MediaRequest",
    "Message",
    "OtaOffer",
    "OtaReport",
    "PartUrl",
    "Status",
    "Telemetry",
    "TelemetrySample",
    "UploadedPart",
    "decode_down",
    "decode_up",
    "encode",
    "make",
    "new_message_id",
]

# kind -> type to decode into (a union for kinds tagged on "op" / "result").
UP_TYPES: dict[str, Any] = {
    "status": Status,
    "telemetry": Telemetry,
    "events": Events,
    "ota": OtaReport,
    "media": MediaRequest | MediaComplete,
    "ack": Ack,
    "cert": CertRequest,
}
DOWN_TYPES: dict[str, Any] = {
    "config": Config,
    "ota": OtaOffer,
    "cmd": Command,
    "media": MediaGranted | MediaRefused,
    "cert": CertIssued | CertRefused,
}


_UNTYPED = msgspec.json.Decoder()
_DECODERS: dict[tuple[str, str], msgspec.json.Decoder] = {
    **{("up", k): msgspec.json.Decoder(t) for k, t in UP_TYPES.items()},
    **{("down", k): msgspec.json.Decoder(t) for k, t in DOWN_TYPES.items()},
}
_ENCODER = msgspec.json.Encoder()

M = TypeVar("M", bound=Message)


def new_message_id() -> str:
    """A fresh message id (uuid4 hex, 32 chars)."""
    return uuid.uuid4().hex


def _decode(direction: str, kind: str, payload: bytes | bytearray | memoryview | str) -> Message:
    decoder = _DECODERS.get((direction, kind))
    if decoder is None:
        raise MessageError("unknown_kind", f"no {direction} message kind {kind!r}")
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    elif isinstance(payload, memoryview):
        payload = payload.tobytes()
    size = len(payload)
    if size > MAX_PAYLOAD_BYTES:
        raise MessageError("oversize", f"{size} bytes > {MAX_PAYLOAD_BYTES}")
    # msgspec raises UnicodeDecodeError (a ValueError) for invalid UTF-8 inside a string.
    try:
        document = _UNTYPED.decode(payload)
        jsonsafe.check_keys(payload, document)
    except msgspec.ValidationError as exc:  # valid JSON, but a number no float can hold
        raise MessageError("schema", str(exc)) from None
    except (msgspec.DecodeError, RecursionError, ValueError) as exc:
        raise MessageError("bad_json", str(exc)) from None
    if not isinstance(document, dict):
        raise MessageError("schema", f"a message is a JSON object, not {type(document).__name__}")
    version = document.get("v", msgspec.UNSET)
    if version is msgspec.UNSET:
        raise MessageError("unknown_version", 'missing "v"')
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise MessageError("unknown_version", f"v={version!r}, this side speaks {PROTOCOL_VERSION}")
    # In JSON a NUL can only be written as an escape: look for one only where the text has it.
    if b"\\u0000" in payload and (where := jsonsafe.nul_path(document)):
        raise MessageError("schema", f"{where}: text may not contain a NUL character")
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise MessageError("schema", str(exc)) from None
    except (msgspec.DecodeError, ValueError) as exc:
        raise MessageError("bad_json", str(exc)) from None


def decode_up(kind: str, payload: bytes | bytearray | memoryview | str) -> Message:
    """Validate a payload received on up/{kind}; raises MessageError only."""
    return _decode("up", kind, payload)


def decode_down(kind: str, payload: bytes | bytearray | memoryview | str) -> Message:
    """Validate a payload received on down/{kind}; raises MessageError only."""
    return _decode("down", kind, payload)


def encode(msg: Message) -> bytes:
    """JSON bytes of a message; refuses one larger than MAX_PAYLOAD_BYTES."""
    data = _ENCODER.encode(msg)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise MessageError("oversize", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    return data


def validate(msg: M) -> M:
    """Check a constructed message against its schema (constructors check no constraints)."""
    data = encode(msg)
    try:
        return msgspec.json.decode(data, type=type(msg))
    except msgspec.ValidationError as exc:
        raise MessageError("schema", str(exc)) from None


def make(cls: type[M], /, **fields: Any) -> M:
    """Build and validate a message, filling v, a fresh id and ts=now (to the ms) unless given."""
    fields.setdefault("v", PROTOCOL_VERSION)
    fields.setdefault("id", new_message_id())
    fields.setdefault("ts", round(time.time(), 3))  # ms: the digits after it are noise on the wire
    try:
        msg = cls(**fields)
    except (TypeError, ValueError) as exc:
        raise MessageError("schema", str(exc)) from None
    return validate(msg)


def kind_of(msg: Message) -> tuple[str, str]:
    """(direction, kind) a message is published on, e.g. ("up", "status")."""
    for direction, table in (("up", UP_TYPES), ("down", DOWN_TYPES)):
        for kind, tp in table.items():
            members = getattr(tp, "__args__", (tp,))
            if type(msg) in members:
                return direction, kind
    raise MessageError("unknown_kind", f"{type(msg).__name__} is not a message kind")
