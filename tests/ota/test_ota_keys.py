"""Keys: offline root, encrypted release keys, root-signed key lists; rotate, revoke, tampering."""

from __future__ import annotations

import copy
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command

from ota.errors import OtaError
from ota.models import KeyListDocument, KeyRole, SigningKey
from ota.services import keys_revoke, keys_rotate, release_create
from ota.services.keys import load_root_key, root_public_key
from protocol.errors import ManifestError
from protocol.manifest import keylist_signed, sign_document, verify_keylist, verify_manifest
from tests.api_base import assert_error_body

pytestmark = pytest.mark.django_db


def current_keylist():
    doc = KeyListDocument.objects.order_by("-version").first()
    return verify_keylist(
        doc.document, root_public_key=root_public_key(), current_version=None, now=doc.created_at
    )


def test_init_keeps_the_root_private_key_offline_only(root_key_path):
    assert stat.S_IMODE(root_key_path.stat().st_mode) == 0o600
    root = SigningKey.objects.get(role=KeyRole.ROOT)
    assert root.encrypted_private_key == ""  # the server stores the root PUBLIC key only
    release = SigningKey.objects.get(role=KeyRole.RELEASE)
    assert "ENCRYPTED PRIVATE KEY" in release.encrypted_private_key
    keylist = current_keylist()
    assert keylist.version == 1 and set(keylist.keys) == {release.keyid}
    with pytest.raises(CommandError, match="already_initialised"):
        call_command("ota_keys", "init", "--root-out", str(root_key_path.parent / "second.pem"))
    assert not (root_key_path.parent / "second.pem").exists()


def test_rotate_and_revoke_publish_higher_root_signed_key_lists(
    root_key_path, system, release_factory, hardware
):
    old_release = release_factory("1.0.0")
    old_key = SigningKey.objects.get(role=KeyRole.RELEASE)
    call_command("ota_keys", "rotate", "--root-key", str(root_key_path))
    v2 = current_keylist()
    assert v2.version == 2 and len(v2.keys) == 2
    new_release = release_factory("2.0.0")
    assert new_release.signed_by != old_key  # the newest key signs from now on

    keys_revoke(actor=system, keyid=old_key.keyid, root_key=load_root_key(root_key_path))
    v3 = current_keylist()
    assert v3.version == 3 and v3.keys[old_key.keyid].revoked
    with pytest.raises(ManifestError) as refused:  # what a device does with the old key's manifest now
        verify_manifest(
            old_release.manifest,
            keylist=v3,
            installed_serial=0,
            hardware_model=hardware.name,
            agent_version="1.4",
            now=v3.expires - 10,
        )
    assert refused.value.reason == "revoked_key"
    # A device holding v3 refuses v2 (key list rollback).
    with pytest.raises(ManifestError) as stale:
        verify_keylist(
            KeyListDocument.objects.get(version=2).document,
            root_public_key=root_public_key(),
            current_version=3,
            now=v3.expires - 10,
        )
    assert stale.value.reason == "keylist_rollback"


def test_rotate_needs_the_real_root_key(root_key_path, system):
    with pytest.raises(OtaError) as refused:
        keys_rotate(actor=system, root_key=Ed25519PrivateKey.generate())
    assert refused.value.code == "wrong_root_key"
    assert KeyListDocument.objects.count() == 1


def test_revoking_the_last_release_key_is_refused(root_key_path, system):
    only = SigningKey.objects.get(role=KeyRole.RELEASE)
    with pytest.raises(OtaError) as refused:
        keys_revoke(actor=system, keyid=only.keyid, root_key=load_root_key(root_key_path))
    assert refused.value.code == "last_release_key"


def test_api_publishes_only_root_signed_newer_key_lists(root_key_path, api_client_for):
    admin = api_client_for("admin")
    keys = {k.keyid: (k.public_key, False) for k in SigningKey.objects.filter(role=KeyRole.RELEASE)}
    body = keylist_signed(version=2, expires="2099-01-01T00:00:00Z", keys=keys)
    forged = sign_document(body, key=Ed25519PrivateKey.generate())
    assert_error_body(
        admin.post("/api/v1/keylists/", {"document": forged}, format="json"), 400, "keylist_not_root_signed"
    )
    tampered = copy.deepcopy(sign_document(body, key=load_root_key(root_key_path)))
    tampered["signed"]["version"] = 7
    assert_error_body(
        admin.post("/api/v1/keylists/", {"document": tampered}, format="json"), 400, "bad_signature"
    )
    good = sign_document(body, key=load_root_key(root_key_path))  # an offline signing ceremony
    assert admin.post("/api/v1/keylists/", {"document": good}, format="json").status_code == 201
    assert_error_body(
        admin.post("/api/v1/keylists/", {"document": good}, format="json"), 409, "keylist_rollback"
    )
    assert admin.get("/api/v1/keylists/current/").json()["version"] == 2


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("operator", 403), ("admin", 200)])
def test_keys_are_visible_to_admins_only(root_key_path, api_client_for, role, status):
    client = api_client_for(role)
    assert client.get("/api/v1/signing-keys/").status_code == status
    assert client.get("/api/v1/keylists/").status_code == status
    if status == 200:
        rows = client.get("/api/v1/signing-keys/").json()["results"]
        assert {r["role"] for r in rows} == {"root", "release"}
        assert all("private" not in key for r in rows for key in r)


def test_a_release_cannot_be_signed_without_keys(db, system, artifact_factory, hardware):
    with pytest.raises(OtaError) as refused:
        release_create(actor=system, artifact=artifact_factory(), hardware_models=[hardware.name])
    assert refused.value.code == "no_keylist"
