import hashlib

import msgspec
import pytest
from ota_models import broken_model_bytes, model_bytes

from edge.ota import HealthCheckError, OnnxHealthCheck, OtaError
from protocol.signing import key_id


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_happy_path_installs_into_the_inactive_slot_and_keeps_the_old_one(rig):
    v1, v2 = model_bytes(1), model_bytes(2)
    with rig.client() as client:
        assert client.active_model_path() is None  # built-in detector until the first update
        assert client.apply(rig.offer(v1, serial=1)) == "succeeded"
        assert client.state.active == "a" and client.installed_serial == 1
        assert client.active_model_path().read_bytes() == v1
        assert rig.states() == ["downloading", "verifying", "installing", "health_check", "succeeded"]

        rig.reports.clear()
        assert client.apply(rig.offer(v2, serial=2)) == "succeeded"
        assert client.state.active == "b" and client.installed_serial == 2
        assert client.active_model_path().read_bytes() == v2
        assert client.state.slots["a"].serial == 1  # the previous model stays as the fallback slot
        assert client.active_release().version == "2.2.0"
        assert not client.in_trial()
        assert rig.states()[-1] == "succeeded"
    assert not list((rig.state_dir / "downloads").iterdir())


def test_retained_redelivery_of_the_installed_release_is_a_no_op(rig):
    offer = rig.offer(model_bytes(1), serial=1)
    with rig.client() as client:
        client.apply(offer)
        rig.reports.clear()
        assert client.apply(offer) == "succeeded"
        assert rig.states() == ["succeeded"]  # no second download or install
        assert client.state.active == "a"


def test_progress_is_reported_while_downloading(rig):
    with rig.client() as client:
        client.apply(rig.offer(model_bytes(1), serial=1))
    progress = [p for s, _, p in rig.reports if s == "downloading"]
    assert progress[0] == 0.0 and progress == sorted(progress) and progress[-1] >= 0.9


def _tamper_sha(rig, data):
    offer = rig.offer(data, serial=5)
    offer.manifest["signed"]["sha256"] = "0" * 64
    return offer


REFUSALS = {
    "bad_signature": lambda rig, data: _tamper_sha(rig, data),
    "unknown_key": lambda rig, data: rig.offer(data, serial=5, signer=rig.rogue),
    "expired": lambda rig, data: rig.offer(data, serial=5, expires=int(rig.now - 10)),
    "rollback": lambda rig, data: rig.offer(data, serial=1),
    "incompatible_hardware": lambda rig, data: rig.offer(data, serial=5, hardware_models=["cam-z9"]),
    "agent_too_old": lambda rig, data: rig.offer(data, serial=5, min_agent_version="1.10"),
    "keylist_not_root_signed": lambda rig, data: rig.offer(
        data, serial=5, keylist=rig.keylist(signer=rig.release)
    ),
    "keylist_rollback": lambda rig, data: rig.offer(data, serial=5, keylist=rig.keylist(version=1)),
    "hash_mismatch": lambda rig, data: rig.offer(data, serial=5, sha256=hashlib.sha256(b"other").hexdigest()),
    "size_mismatch": lambda rig, data: rig.offer(data, serial=5, size=len(data) + 10),
    "oversize_download": lambda rig, data: rig.offer(data, serial=5, size=len(data) - 10),
    "malformed": lambda rig, data: rig.offer(data, serial=5, keylist={"signed": {}}),
}


@pytest.mark.parametrize("reason", list(REFUSALS))
def test_each_refusal_leaves_the_old_model_active(rig, reason):
    v1 = model_bytes(1)
    rig.keylist_version = 2
    with rig.client() as client:
        assert client.apply(rig.offer(v1, serial=2)) == "succeeded"
        before = (client.state.active, client.installed_serial, sha(client.active_model_path()))
        rig.reports.clear()
        assert client.apply(REFUSALS[reason](rig, model_bytes(9))) == "failed"
        assert rig.reports[-1][:2] == ("failed", reason)
        assert (client.state.active, client.installed_serial, sha(client.active_model_path())) == before
        assert client.state.slots["b"].status == "empty"
        assert not list((rig.state_dir / "slots" / "b").iterdir())
        assert not client.in_trial()
    assert not list((rig.state_dir / "downloads").iterdir())  # a refused artifact is not kept


def test_revoked_release_key_is_refused(rig):
    with rig.client() as client:
        client.apply(rig.offer(model_bytes(1), serial=1))
        rig.revoked.add(key_id(rig.release.public_key()))
        rig.keylist_version = 2
        assert client.apply(rig.offer(model_bytes(2), serial=2)) == "failed"
        assert rig.reports[-1][:2] == ("failed", "revoked_key")
        assert client.state.active == "a"
        # The newer key list was adopted even though the offer was refused.
        assert client.state.keylist["signed"]["version"] == 2


def test_key_rotation_through_a_new_keylist(rig):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with rig.client() as client:
        client.apply(rig.offer(model_bytes(1), serial=1))
        new_key = Ed25519PrivateKey.generate()
        rig.keylist_version = 2
        offer = rig.offer(
            model_bytes(2), serial=2, signer=new_key, keylist=rig.keylist(extra_keys=(new_key,))
        )
        assert client.apply(offer) == "succeeded"


def test_same_version_keylist_with_other_content_never_replaces_the_stored_one(rig):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with rig.client() as client:
        client.apply(rig.offer(model_bytes(1), serial=1))
        sneaky = Ed25519PrivateKey.generate()
        # Root-signed but the same version: treated as re-delivery, the stored list stays.
        offer = rig.offer(model_bytes(2), serial=2, signer=sneaky, keylist=rig.keylist(extra_keys=(sneaky,)))
        assert client.apply(offer) == "failed"
        assert rig.reports[-1][:2] == ("failed", "unknown_key")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (broken_model_bytes(), "health_check_failed: load_failed"),
        (model_bytes(3, op="Log"), "health_check_failed: bad_output"),
    ],
    ids=["random_bytes", "nan_output"],
)
def test_health_check_failure_reverts_to_the_old_slot(rig, data, reason):
    v1 = model_bytes(1)
    switched = []
    with rig.client(on_active_changed=switched.append) as client:
        client.apply(rig.offer(v1, serial=1))
        rig.reports.clear()
        switched.clear()
        assert client.apply(rig.offer(data, serial=2)) == "rolled_back"
        assert rig.states() == ["downloading", "verifying", "installing", "health_check", "rolled_back"]
        assert rig.reports[-1][1] == reason
        assert client.state.active == "a" and client.active_model_path().read_bytes() == v1
        assert client.installed_serial == 1
        assert client.state.slots["b"].status == "empty"
        # The agent was told to load the new model, then the old one again.
        assert [p.parent.name for p in switched] == ["b", "a"]


def test_too_slow_model_is_rolled_back(rig):
    with rig.client(health_check=OnnxHealthCheck(latency_budget_ms=1e-6)) as client:
        assert client.apply(rig.offer(model_bytes(1), serial=1)) == "rolled_back"
        assert rig.reports[-1][1] == "health_check_failed: too_slow"
        assert client.active_model_path() is None  # back to the built-in detector


def test_an_injected_health_check_decides(rig):
    seen = []

    def refuse(path):
        seen.append(path)
        raise HealthCheckError("inference_failed", "injected")

    with rig.client(health_check=refuse) as client:
        client.apply(rig.offer(model_bytes(1), serial=1))
        assert client.state.active is None and seen[0].name == "model.onnx"
        # The retained offer comes back on every reconnect: answered, not tried again.
        rig.reports.clear()
        assert client.apply(rig.offer(model_bytes(1), serial=1)) == "rolled_back"
        assert rig.states() == ["rolled_back"] and len(seen) == 1
        # A new deployment of the same release may try again (the server decides).
        retry = msgspec.structs.replace(rig.offer(model_bytes(1), serial=1), deployment_id="dep-9")
        assert client.apply(retry) == "rolled_back"
        assert len(seen) == 2


def test_default_health_check_passes_a_good_model(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(model_bytes(1))
    check = OnnxHealthCheck(latency_budget_ms=5000)
    check(path)
    assert 0 < check.last_latency_ms < 5000
    with pytest.raises(HealthCheckError) as exc:
        check(tmp_path / "missing.onnx")
    assert exc.value.reason == "missing"


def test_one_client_per_state_dir(rig):
    with rig.client():
        with pytest.raises(OtaError) as exc:
            rig.client()
        assert exc.value.reason == "locked"


def test_root_key_is_pinned_once(rig):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge.ota import OtaClient

    rig.client().close()
    with pytest.raises(OtaError) as exc:
        OtaClient(rig.state_dir, hardware_model="x", agent_version="1",
                  root_public_key=Ed25519PrivateKey.generate().public_key())  # fmt: skip
    assert exc.value.reason == "root_key_mismatch"
    with pytest.raises(OtaError) as exc:
        OtaClient(rig.tmp / "fresh", hardware_model="x", agent_version="1")
    assert exc.value.reason == "no_root_key"


def test_corrupt_active_slot_falls_back_at_start_up(rig):
    with rig.client() as client:
        client.apply(rig.offer(model_bytes(1), serial=1))
        client.apply(rig.offer(model_bytes(2), serial=2))
        path = client.active_model_path()
    path.write_bytes(b"bit rot")
    with rig.client() as client:
        assert client.recover() is None
        assert client.state.active == "a" and client.active_model_path().read_bytes() == model_bytes(1)
