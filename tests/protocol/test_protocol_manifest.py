"""The tamper suite: every way a key list or release manifest must be refused."""

import copy
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import ManifestError
from protocol.manifest import (
    keylist_signed,
    release_signed,
    sign_document,
    verify_keylist,
    verify_manifest,
    version_tuple,
)
from protocol.signing import add_signature, canonical_json, key_id, public_key_to_b64

NOW = 1_800_000_000
FUTURE = "2030-01-01T00:00:00Z"
ARTIFACT = b"onnx-bytes" * 100


@pytest.fixture(scope="module")
def keys():
    return {name: Ed25519PrivateKey.generate() for name in ("root", "release", "old", "rogue", "other_root")}


def _entry(key, revoked=False):
    return key_id(key.public_key()), (public_key_to_b64(key.public_key()), revoked)


def make_keylist(keys, *, version=2, expires=FUTURE, revoked_old=True, signer="root"):
    entries = dict([_entry(keys["release"]), _entry(keys["old"], revoked=revoked_old)])
    return sign_document(keylist_signed(version=version, expires=expires, keys=entries), key=keys[signer])


def make_release(keys, *, signer="release", **over):
    fields = {
        "model": "person-det",
        "version": "2.1.0",
        "serial": 10,
        "artifact_url": "https://fleet.example/artifacts/person-det-2.1.0.onnx",
        "sha256": hashlib.sha256(ARTIFACT).hexdigest(),
        "size": len(ARTIFACT),
        "hardware_models": ["cam-x1", "cam-x2"],
        "min_agent_version": "1.4",
        "created": "2026-01-01T00:00:00Z",
        "expires": FUTURE,
    }
    fields.update(over)
    return sign_document(release_signed(**fields), key=keys[signer])


@pytest.fixture
def keylist(keys):
    return verify_keylist(
        make_keylist(keys), root_public_key=keys["root"].public_key(), current_version=None, now=NOW
    )


def verify(doc, keylist, **over):
    args = {"installed_serial": 9, "hardware_model": "cam-x1", "agent_version": "1.4.0", "now": NOW}
    args.update(over)
    return verify_manifest(doc, keylist=keylist, **args)


def refused(reason, fn, *args, **kwargs):
    with pytest.raises(ManifestError) as exc:
        fn(*args, **kwargs)
    assert exc.value.reason == reason, exc.value.detail
    return exc.value


# --- key list ------------------------------------------------------------------


def test_valid_keylist(keys, keylist):
    assert keylist.version == 2
    assert set(keylist.keys) == {key_id(keys["release"].public_key()), key_id(keys["old"].public_key())}
    assert keylist.keys[key_id(keys["old"].public_key())].revoked
    assert keylist.document["signed"]["version"] == 2


def test_keylist_not_signed_by_root_is_refused(keys):
    doc = make_keylist(keys, signer="release")
    refused("keylist_not_root_signed", verify_keylist, doc, root_public_key=keys["root"].public_key(),
            current_version=None, now=NOW)  # fmt: skip


def test_keylist_signed_by_another_root_is_refused(keys):
    doc = make_keylist(keys, signer="other_root")
    refused("keylist_not_root_signed", verify_keylist, doc, root_public_key=keys["root"].public_key(),
            current_version=None, now=NOW)  # fmt: skip


def test_keylist_with_forged_root_signature_is_refused(keys):
    doc = make_keylist(keys)
    doc["signed"]["keys"][key_id(keys["rogue"].public_key())] = {
        "public": public_key_to_b64(keys["rogue"].public_key()),
        "revoked": False,
    }
    refused("bad_signature", verify_keylist, doc, root_public_key=keys["root"].public_key(),
            current_version=None, now=NOW)  # fmt: skip


def test_keylist_rollback_is_refused_and_same_version_is_redelivery(keys):
    root = keys["root"].public_key()
    old = make_keylist(keys, version=3)
    refused("keylist_rollback", verify_keylist, old, root_public_key=root, current_version=4, now=NOW)
    assert verify_keylist(old, root_public_key=root, current_version=3, now=NOW).version == 3
    assert verify_keylist(make_keylist(keys, version=5), root_public_key=root, current_version=4, now=NOW)


def test_expired_keylist_is_refused(keys):
    doc = make_keylist(keys, expires=NOW - 1)
    refused("expired", verify_keylist, doc, root_public_key=keys["root"].public_key(), current_version=None,
            now=NOW)  # fmt: skip


def test_keylist_counter_signed_during_rotation_is_accepted(keys):
    doc = add_signature(make_keylist(keys, signer="other_root"), key=keys["root"])
    assert verify_keylist(doc, root_public_key=keys["root"].public_key(), current_version=None, now=NOW)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("signatures"),
        lambda d: d.update(signatures=[]),
        lambda d: d.update(extra=1),
        lambda d: d["signatures"][0].update(sig="%%%"),
    ],
)
def test_malformed_keylist_documents(keys, mutate):
    doc = make_keylist(keys)
    mutate(doc)
    refused("malformed", verify_keylist, doc, root_public_key=keys["root"].public_key(), current_version=None,
            now=NOW)  # fmt: skip


def test_keylist_whose_keyid_does_not_match_its_key_is_malformed(keys):
    signed = keylist_signed(version=1, expires=FUTURE, keys=dict([_entry(keys["release"])]))
    signed["keys"] = {"0" * 64: next(iter(signed["keys"].values()))}
    doc = sign_document(signed, key=keys["root"])
    refused("malformed", verify_keylist, doc, root_public_key=keys["root"].public_key(), current_version=None,
            now=NOW)  # fmt: skip


# --- release manifest ----------------------------------------------------------


def test_valid_manifest(keys, keylist):
    manifest = verify(make_release(keys), keylist)
    assert (manifest.model, manifest.serial, manifest.size) == ("person-det", 10, len(ARTIFACT))
    assert manifest.keyid == key_id(keys["release"].public_key())
    assert manifest.hardware_models == ("cam-x1", "cam-x2")


def test_first_install_has_no_installed_serial(keys, keylist):
    assert verify(make_release(keys, serial=1), keylist, installed_serial=None).serial == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("sha256", "0" * 64), ("size", 1), ("artifact_url", "https://evil/x.onnx"), ("serial", 99),
     ("hardware_models", ["cam-x1", "cam-evil"]), ("expires", "2099-01-01T00:00:00Z")],
)  # fmt: skip
def test_any_tampered_field_breaks_the_signature(keys, keylist, field, value):
    doc = make_release(keys)
    doc["signed"][field] = value
    refused("bad_signature", verify, doc, keylist)


def test_signature_from_another_document_is_refused(keys, keylist):
    doc = make_release(keys)
    doc["signatures"] = make_release(keys, serial=11)["signatures"]
    refused("bad_signature", verify, doc, keylist)


def test_unknown_key_is_refused(keys, keylist):
    refused("unknown_key", verify, make_release(keys, signer="rogue"), keylist)


def test_root_key_cannot_sign_releases(keys, keylist):
    refused("unknown_key", verify, make_release(keys, signer="root"), keylist)


def test_revoked_release_key_is_refused(keys, keylist):
    refused("revoked_key", verify, make_release(keys, signer="old"), keylist)


def test_rogue_signature_next_to_revoked_one_is_still_refused(keys, keylist):
    doc = add_signature(make_release(keys, signer="old"), key=keys["rogue"])
    refused("revoked_key", verify, doc, keylist)


def test_expired_manifest_is_refused(keys, keylist):
    refused("expired", verify, make_release(keys, expires=NOW - 1), keylist)
    refused("expired", verify, make_release(keys, expires="2020-01-01T00:00:00+00:00"), keylist)


def test_manifest_under_expired_keylist_is_refused(keys, keylist):
    refused("expired", verify, make_release(keys), keylist, now=keylist.expires + 1)


@pytest.mark.parametrize("installed", [10, 11, 1000])
def test_replayed_older_or_same_serial_is_a_rollback(keys, keylist, installed):
    # A valid, correctly signed manifest replayed to a device that already has a newer one.
    refused("rollback", verify, make_release(keys, serial=10), keylist, installed_serial=installed)


def test_incompatible_hardware_is_refused(keys, keylist):
    refused("incompatible_hardware", verify, make_release(keys), keylist, hardware_model="cam-z9")


@pytest.mark.parametrize(("agent", "ok"), [("1.3.99", False), ("1.4", True), ("1.4.0", True), ("1.10", True),
                                           ("0.9", False), ("1.4.0-dev", True), ("garbage", False)])  # fmt: skip
def test_agent_version_is_compared_numerically(keys, keylist, agent, ok):
    doc = make_release(keys, min_agent_version="1.4")
    if ok:
        assert verify(doc, keylist, agent_version=agent)
    else:
        refused("agent_too_old", verify, doc, keylist, agent_version=agent)


def test_version_tuple():
    assert version_tuple("1.10.0") > version_tuple("1.9.9")
    assert version_tuple("2") == version_tuple("2.0.0")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(type="keylist"),
        lambda s: s.pop("sha256"),
        lambda s: s.update(serial="10"),
        lambda s: s.update(serial=True),
        lambda s: s.update(size=-1),
        lambda s: s.update(hardware_models=[]),
        lambda s: s.update(expires="next tuesday"),
        lambda s: s.update(min_agent_version="v1"),
    ],
)
def test_malformed_but_validly_signed_manifest(keys, keylist, mutate):
    signed = copy.deepcopy(make_release(keys)["signed"])
    mutate(signed)
    refused("malformed", verify, sign_document(signed, key=keys["release"]), keylist)


def test_keylist_cannot_pass_as_release(keys, keylist):
    doc = sign_document(copy.deepcopy(make_keylist(keys)["signed"]), key=keys["release"])
    refused("malformed", verify, doc, keylist)


def test_floats_are_refused_in_signed_documents(keys, keylist):
    signed = copy.deepcopy(make_release(keys)["signed"])
    signed["size"] = 1000.0
    refused("malformed", sign_document, signed, key=keys["release"])
    doc = make_release(keys)
    doc["signed"]["size"] = float(doc["signed"]["size"])  # same number, different JSON
    refused("malformed", verify, doc, keylist)


def test_canonical_json_form():
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    for bad in (float("nan"), float("inf"), 1.5, {1: "x"}, b"bytes", "\ud800"):
        refused("malformed", canonical_json, {"x": bad})


# --- integers beyond the I-JSON safe range (issue 12) ----------------------------


def _signed_by_hand(signed: dict, key) -> dict:
    """A document signed over a sorted, compact JSON form that does not check integer bounds,
    as another signer's code might make it: only the verifier stands in its way."""
    import base64
    import json

    body = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    sig = base64.b64encode(key.sign(body)).decode()
    return {"signed": signed, "signatures": [{"keyid": key_id(key.public_key()), "sig": sig}]}


@pytest.mark.parametrize("field", ["serial", "size"])
def test_a_huge_integer_is_refused_when_signing(keys, field):
    refused("malformed", make_release, keys, **{field: 2**70})
    refused("malformed", make_release, keys, **{field: 2**53})
    assert (
        verify(
            make_release(keys, serial=2**53 - 1),
            verify_keylist(
                make_keylist(keys), root_public_key=keys["root"].public_key(), current_version=None, now=NOW
            ),
        ).serial
        == 2**53 - 1
    )


def test_a_release_signed_elsewhere_with_serial_2_70_is_refused_and_burns_no_floor(keys, keylist):
    doc = make_release(keys)
    doc = _signed_by_hand({**doc["signed"], "serial": 2**70}, keys["release"])
    error = refused("malformed", verify, doc, keylist)
    assert "safe range" in error.detail
    # The same check guards key lists: a key list version of 2**64 would freeze key rotation.
    entries = dict([_entry(keys["release"])])
    huge = _signed_by_hand({"type": "keylist", "version": 2**64, "expires": FUTURE, "keys": {
        kid: {"public": pub, "revoked": False} for kid, (pub, _) in entries.items()
    }}, keys["root"])  # fmt: skip
    refused(
        "malformed",
        verify_keylist,
        huge,
        root_public_key=keys["root"].public_key(),
        current_version=None,
        now=NOW,
    )
