"""Bearer keys shown once and stored only as a hash: API tokens and enrollment tokens.

Keys are 256-bit random, so a fast hash is enough (nothing to brute-force) and a lookup by
hash stays one indexed equality. The first 12 characters are kept in clear to tell keys
apart in lists and logs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.db import models, transaction
from django.utils import timezone

from fleet.audit import Actor, audit_record, snapshot


@dataclass(frozen=True)
class NewKey:
    key: str  # give it to the caller once, never store it
    prefix: str
    key_hash: str


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_new(tag: str) -> NewKey:
    """A new key starting with `tag` (e.g. "flt_"), recognisable in logs and by secret scanners."""
    key = tag + secrets.token_urlsafe(32)
    return NewKey(key=key, prefix=key[:12], key_hash=key_hash(key))


@transaction.atomic
def key_revoke(*, actor: Actor, record: models.Model, action: str) -> models.Model:
    """Set `record.revoked_at` (once: revoking again changes nothing) and audit it."""
    if record.revoked_at is not None:
        return record
    before = snapshot(record)
    record.revoked_at = timezone.now()
    record.save(update_fields=["revoked_at"])
    audit_record(actor=actor, action=action, instance=record, before=before, after=snapshot(record))
    return record
