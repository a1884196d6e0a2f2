"""One error family for the wire, each carrying a short stable reason code.

The reason goes into counters, the dead-letter table and up/ota reports, so it
must stay stable; the detail is for humans and may change.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A refused topic, message or signed document."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TopicError(ProtocolError):
    """A topic outside fleet/v1/devices/{id}/{up|down}/{kind} (reason "topic"), or one naming
    another device than the sender (reason "device_mismatch")."""


class MessageError(ProtocolError):
    """A payload refused by decode/encode.

    Reasons: oversize, bad_json, unknown_version, schema, unknown_kind.
    """


class ManifestError(ProtocolError):
    """A key list, release manifest or download refused by the verifier."""


MANIFEST_REASONS: frozenset[str] = frozenset(
    {
        "bad_signature",
        "unknown_key",
        "revoked_key",
        "hash_mismatch",
        "size_mismatch",
        "oversize_download",
        "expired",
        "rollback",
        "incompatible_hardware",
        "agent_too_old",
        "malformed",
        "keylist_not_root_signed",
        "keylist_rollback",
    }
)
