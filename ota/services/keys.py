"""Signing keys and key lists (TUF/Uptane): an offline root key delegates to release keys.

The server never holds the root private key. `keys_init` writes it to a file the
operator takes offline; rotate and revoke need it back for one signature. Release
private keys are stored encrypted (PKCS#8, passphrase from settings.OTA_KEY_PASSPHRASE).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fleet.audit import Actor, audit_record
from fleet.pki import write_atomic
from ota.errors import OtaError
from ota.models import KeyListDocument, KeyRole, SigningKey
from protocol.errors import ManifestError
from protocol.manifest import keylist_signed, parse_time, sign_document, verify_keylist
from protocol.signing import key_id, public_key_from_b64, public_key_to_b64


def iso(moment: dt.datetime) -> str:
    """The time form used inside signed documents (integers only, so no float seconds)."""
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _passphrase() -> bytes:
    return settings.OTA_KEY_PASSPHRASE.encode()


def encrypt_private_key(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(_passphrase()),
    ).decode("ascii")


def load_root_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The offline root key from the operator's file (PKCS#8 PEM, unencrypted: it lives offline)."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise OtaError("bad_root_key", f"Cannot read a root key from {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise OtaError("bad_root_key", "The root key must be an Ed25519 key.")
    return key


def root_public_key() -> Ed25519PublicKey:
    root = SigningKey.objects.filter(role=KeyRole.ROOT).order_by("-id").first()
    if root is None:
        raise OtaError("no_root_key", "No OTA root key yet: run `manage.py ota_keys init`.", status=409)
    return public_key_from_b64(root.public_key)


def current_keylist() -> KeyListDocument:
    doc = KeyListDocument.objects.order_by("-version").first()
    if doc is None:
        raise OtaError("no_keylist", "No key list yet: run `manage.py ota_keys init`.", status=409)
    return doc


def active_release_key() -> tuple[SigningKey, Ed25519PrivateKey]:
    """The newest release key that is unrevoked in the current key list and whose private key we hold."""
    listed = current_keylist().document["signed"]["keys"]
    for row in SigningKey.objects.filter(role=KeyRole.RELEASE, revoked_at__isnull=True).exclude(
        encrypted_private_key=""
    ):
        entry = listed.get(row.keyid)
        if entry is not None and not entry["revoked"]:
            key = serialization.load_pem_private_key(
                row.encrypted_private_key.encode(), password=_passphrase()
            )
            assert isinstance(key, Ed25519PrivateKey)
            return row, key
    raise OtaError("no_release_key", "No usable release key: rotate in a new one.", status=409)


def _new_release_key() -> SigningKey:
    key = Ed25519PrivateKey.generate()
    return SigningKey.objects.create(
        keyid=key_id(key.public_key()),
        role=KeyRole.RELEASE,
        public_key=public_key_to_b64(key.public_key()),
        encrypted_private_key=encrypt_private_key(key),
    )


def _check_root(root_key: Ed25519PrivateKey) -> None:
    if key_id(root_key.public_key()) != key_id(root_public_key()):
        raise OtaError("wrong_root_key", "That is not the root key this fleet pins.", status=403)


def _store_keylist(document: dict[str, Any], *, current: int | None, now: dt.datetime) -> KeyListDocument:
    """Verify exactly as a device would (protocol.verify_keylist), then store; refuses anything else."""
    try:
        verified = verify_keylist(
            document, root_public_key=root_public_key(), current_version=current, now=now
        )
    except ManifestError as exc:
        raise OtaError(exc.reason, f"Key list refused: {exc.detail or exc.reason}.") from exc
    if current is not None and verified.version <= current:
        raise OtaError(
            "keylist_rollback", f"Key list v{verified.version} is not newer than v{current}.", status=409
        )
    return KeyListDocument.objects.create(
        version=verified.version,
        document=document,
        expires_at=dt.datetime.fromtimestamp(verified.expires, tz=dt.UTC),
    )


def _sign_keylist(*, root_key: Ed25519PrivateKey, version: int, now: dt.datetime) -> dict[str, Any]:
    keys = {
        row.keyid: (row.public_key, row.revoked_at is not None)
        for row in SigningKey.objects.filter(role=KeyRole.RELEASE).order_by("id")
    }
    expires = iso(now + dt.timedelta(days=settings.OTA_KEYLIST_EXPIRY_DAYS))
    return sign_document(keylist_signed(version=version, expires=expires, keys=keys), key=root_key)


@dataclass(frozen=True)
class KeysInitResult:
    root_keyid: str
    release_keyid: str
    keylist_version: int


@transaction.atomic
def keys_init(
    *, actor: Actor, root_out: str | os.PathLike[str], now: dt.datetime | None = None
) -> KeysInitResult:
    """Create the root key (written to `root_out`, mode 0600, never stored), a release key and key list v1."""
    now = now or timezone.now()
    if SigningKey.objects.filter(role=KeyRole.ROOT).exists():
        raise OtaError("already_initialised", "OTA keys exist already; use rotate.", status=409)
    if Path(root_out).exists():
        raise OtaError("file_exists", f"{root_out} exists; refusing to overwrite a root key.", status=409)
    root = Ed25519PrivateKey.generate()
    pem = root.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(root_out, pem, mode=0o600)
    root_row = SigningKey.objects.create(
        keyid=key_id(root.public_key()), role=KeyRole.ROOT, public_key=public_key_to_b64(root.public_key())
    )
    release_row = _new_release_key()
    doc = _store_keylist(_sign_keylist(root_key=root, version=1, now=now), current=None, now=now)
    audit_record(
        actor=actor,
        action="ota_keys.init",
        instance=doc,
        after={"root": root_row.keyid, "release": release_row.keyid, "keylist_version": 1},
    )
    return KeysInitResult(root_row.keyid, release_row.keyid, doc.version)


@transaction.atomic
def keys_rotate(
    *,
    actor: Actor,
    root_key: Ed25519PrivateKey,
    revoke_previous: bool = False,
    now: dt.datetime | None = None,
) -> KeyListDocument:
    """Add a new release key (it signs from now on); optionally revoke the ones before it. Publishes v+1."""
    now = now or timezone.now()
    _check_root(root_key)
    current = KeyListDocument.objects.select_for_update().order_by("-version").first()
    if current is None:
        raise OtaError("no_keylist", "No key list yet: run `manage.py ota_keys init`.", status=409)
    if revoke_previous:
        SigningKey.objects.filter(role=KeyRole.RELEASE, revoked_at__isnull=True).update(revoked_at=now)
    new = _new_release_key()
    doc = _store_keylist(
        _sign_keylist(root_key=root_key, version=current.version + 1, now=now),
        current=current.version,
        now=now,
    )
    audit_record(
        actor=actor,
        action="ota_keys.rotate",
        instance=doc,
        after={"release": new.keyid, "keylist_version": doc.version, "revoke_previous": revoke_previous},
    )
    return doc


@transaction.atomic
def keys_revoke(
    *, actor: Actor, keyid: str, root_key: Ed25519PrivateKey, now: dt.datetime | None = None
) -> KeyListDocument:
    """Mark a release key revoked in a new key list; devices then refuse anything it signs."""
    now = now or timezone.now()
    _check_root(root_key)
    current = KeyListDocument.objects.select_for_update().order_by("-version").first()
    row = SigningKey.objects.filter(role=KeyRole.RELEASE, keyid=keyid).first()
    if row is None or current is None:
        raise OtaError("not_found", f"No release key {keyid}.", status=404)
    if row.revoked_at is not None:
        raise OtaError("already_revoked", f"Release key {keyid[:12]} is revoked already.", status=409)
    others = SigningKey.objects.filter(role=KeyRole.RELEASE, revoked_at__isnull=True).exclude(pk=row.pk)
    if not others.exists():
        raise OtaError(
            "last_release_key", "Rotate in a new release key before revoking the last one.", status=409
        )
    row.revoked_at = now
    row.save(update_fields=["revoked_at"])
    doc = _store_keylist(
        _sign_keylist(root_key=root_key, version=current.version + 1, now=now),
        current=current.version,
        now=now,
    )
    audit_record(actor=actor, action="ota_keys.revoke", instance=row, after={"keylist_version": doc.version})
    return doc


@transaction.atomic
def keylist_publish(*, actor: Actor, document: Any, now: dt.datetime | None = None) -> KeyListDocument:
    """Publish a key list signed elsewhere (an offline signing ceremony). Must be root-signed and newer."""
    now = now or timezone.now()
    current = KeyListDocument.objects.select_for_update().order_by("-version").first()
    doc = _store_keylist(document, current=current.version if current else None, now=now)
    for kid, entry in document["signed"]["keys"].items():
        row = SigningKey.objects.filter(keyid=kid).first()
        if row is None:
            # A release key made offline: we can list it but never sign with it.
            SigningKey.objects.create(keyid=kid, role=KeyRole.RELEASE, public_key=entry["public"])
        elif entry["revoked"] and row.revoked_at is None:
            row.revoked_at = now
            row.save(update_fields=["revoked_at"])
    audit_record(actor=actor, action="ota_keys.publish", instance=doc, after={"keylist_version": doc.version})
    return doc


def keylist_expires_at(doc: KeyListDocument) -> dt.datetime:
    return dt.datetime.fromtimestamp(parse_time(doc.document["signed"]["expires"]), tz=dt.UTC)
