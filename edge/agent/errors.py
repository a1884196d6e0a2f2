"""The one error type of the edge agent (enrollment, identity, configuration, link)."""

from __future__ import annotations


class AgentError(Exception):
    """`reason` is a stable code; the message is for people.

    Reasons: not_enrolled, already_enrolled, identity_corrupt, key_missing, bad_certificate,
    no_renewal, bad_config, enroll_refused, enroll_unreachable, enroll_bad_answer.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}" if message else reason)
