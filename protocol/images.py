"""Small images carried inside a message: an event's thumbnail in its end report (up/events).

A thumbnail of a few hundred bytes costs less inline, as base64 in the JSON, than an upload
grant round trip (up/media request, a presigned PUT's request head, up/media complete:
~1.2 kB on the wire, bench/edge) — up to about 3.8 kB, where base64's third on top of the
bytes costs as much as the round trip. The cap stays below that: 3 KiB decoded is 4096
base64 characters, so a refused one fits whole in a dead-letter row. Bigger images keep
the grant path.

The field is checked apart from the message schema on purpose: a bad thumbnail must not
make the receiver refuse the event metadata around it.
"""

from __future__ import annotations

import base64
import binascii

from protocol.errors import MessageError

INLINE_THUMBNAIL_MAX_BYTES = 3 * 1024
INLINE_THUMBNAIL_MAX_CHARS = 4 * -(-INLINE_THUMBNAIL_MAX_BYTES // 3)  # base64 length of the cap

JPEG = "image/jpeg"
WEBP = "image/webp"
INLINE_CONTENT_TYPES: tuple[str, ...] = (JPEG, WEBP)


def image_content_type(data: bytes) -> str | None:
    """image/jpeg or image/webp from the file's magic bytes; None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return JPEG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def fits_inline(data: bytes) -> bool:
    """True if `data` may travel inline: within the cap and a JPEG or WebP."""
    return 0 < len(data) <= INLINE_THUMBNAIL_MAX_BYTES and image_content_type(data) is not None


def encode_inline_thumbnail(data: bytes) -> str:
    """Standard base64 (RFC 4648, padded) of an image that fits inline; MessageError otherwise."""
    if not fits_inline(data):
        raise MessageError(
            "bad_thumbnail",
            f"an inline thumbnail is a JPEG or WebP of 1..{INLINE_THUMBNAIL_MAX_BYTES} bytes",
        )
    return base64.b64encode(data).decode("ascii")


def decode_inline_thumbnail(value: str) -> tuple[bytes, str]:
    """(bytes, content type) of an inline thumbnail; MessageError("bad_thumbnail") if it is not
    standard base64, decodes to more than INLINE_THUMBNAIL_MAX_BYTES, or is not a JPEG or WebP."""
    if len(value) > INLINE_THUMBNAIL_MAX_CHARS:
        raise MessageError(
            "bad_thumbnail", f"too large: {len(value)} base64 characters > {INLINE_THUMBNAIL_MAX_CHARS}"
        )
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MessageError("bad_thumbnail", f"not base64: {exc}") from None
    if not data:
        raise MessageError("bad_thumbnail", "empty")
    if len(data) > INLINE_THUMBNAIL_MAX_BYTES:
        raise MessageError("bad_thumbnail", f"too large: {len(data)} bytes > {INLINE_THUMBNAIL_MAX_BYTES}")
    content_type = image_content_type(data)
    if content_type is None:
        raise MessageError("bad_thumbnail", "not a JPEG or WebP image")
    return data, content_type
