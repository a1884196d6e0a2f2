"""The message envelope and the constrained field types every message reuses."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from protocol.jsonsafe import MAX_SAFE_INT

MAX_PAYLOAD_BYTES = 256 * 1024

# Message ids are deduplication keys stored server-side: short and printable.
MESSAGE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=MESSAGE_ID_PATTERN)]
MESSAGE_ID = re.compile(MESSAGE_ID_PATTERN)
# Unix seconds on the device clock; an unset RTC reads 1970, so only sign and
# finiteness are checked (1e11 s is year 5138).
Timestamp = Annotated[float, msgspec.Meta(ge=0, lt=1e11)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=2000)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Unit = Annotated[float, msgspec.Meta(ge=0, le=1)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
# Every integer stays in the I-JSON safe range (protocol.jsonsafe): a bigger one means different
# things to different parsers and does not fit a database bigint.
NonNegInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0, lt=1e15)]
PosInt = Annotated[int, msgspec.Meta(gt=0, le=MAX_SAFE_INT)]
Sha256Hex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Version = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
HHMM = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
PartNumber = Annotated[int, msgspec.Meta(ge=1, le=10000)]  # S3 multipart limits
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"^(https?|file)://")]
Pem = Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----")


def check_pem(value: str, label: str, field: str) -> None:
    """Shape check only (the crypto layer parses it); raised inside __post_init__."""
    match = _PEM_BLOCK.search(value)
    if match is None or match.group(1) != label:
        raise ValueError(f"{field} must be a PEM {label}")


class Frozen(msgspec.Struct, frozen=True, kw_only=True):
    """Base of nested value types."""


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Envelope of every message: {"v": 1, "id": ..., "ts": ..., ...}.

    Unknown fields are ignored, so a v1 peer may add optional fields without a
    version bump; a breaking change is v2.
    """

    v: Literal[1]
    id: MessageId
    ts: Timestamp
