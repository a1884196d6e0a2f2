"""The OTA API: artifact upload (ONNX checked), releases, deployments and operator actions, audited."""

from __future__ import annotations

import io

import pytest

from fleet.models import AuditEntry
from ota.models import ModelArtifact, Release
from tests.api_base import assert_error_body
from tests.ota.conftest import onnx_model_bytes

pytestmark = pytest.mark.django_db


def upload(client, data: bytes, name="person-det", version="1.0.0", **extra):
    fields = {"name": name, "version": version, "file": io.BytesIO(data), **extra}
    fields["file"].name = "model.onnx"
    return client.post("/api/v1/artifacts/", fields, format="multipart")


def test_upload_checks_stores_and_describes_the_model(operator_client, hardware):
    import hashlib

    data = onnx_model_bytes(size=16)
    response = upload(operator_client, data, hardware_models=[hardware.name], notes="first")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size"] == len(data)
    assert body["input_shape"] == [1, 3, 16, 16]
    assert body["labels"] == ["person", "car"] and body["hardware_models"] == [hardware.name]
    from fleet import storage

    stored = ModelArtifact.objects.get(pk=body["id"]).storage_key
    with storage.open(stored) as fh:
        assert fh.read() == data
    assert AuditEntry.objects.filter(action="modelartifact.create", object_id=str(body["id"])).exists()


@pytest.mark.parametrize("junk", [b"not a model at all", b"\x08\x01" * 50, b""])
def test_a_file_that_is_not_onnx_is_refused_with_a_clear_400(operator_client, junk):
    response = upload(operator_client, junk)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("invalid_model", "validation_error")
    assert not ModelArtifact.objects.exists()


def test_viewers_cannot_upload(api_client_for):
    assert upload(api_client_for("viewer"), onnx_model_bytes()).status_code == 403


def test_release_with_unknown_hardware_is_refused(operator_client, root_key_path, artifact_factory):
    artifact = artifact_factory()
    response = operator_client.post(
        "/api/v1/releases/", {"artifact": artifact.pk, "hardware_models": ["cam-nope"]}, format="json"
    )
    error = assert_error_body(response, 400, "unknown_hardware")
    assert "hardware_models" in error["fields"]


def test_serials_only_increase_per_track_and_manifests_are_signed(
    operator_client, root_key_path, artifact_factory, hardware
):
    serials = []
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        artifact = artifact_factory(version)
        response = operator_client.post(
            "/api/v1/releases/",
            {"artifact": artifact.pk, "hardware_models": [hardware.name], "expires_days": 30},
            format="json",
        )
        assert response.status_code == 201, response.content
        signed = response.json()["manifest"]["signed"]
        serials.append(signed["serial"])
        assert signed["sha256"] == artifact.sha256 and signed["hardware_models"] == [hardware.name]
    assert serials == [1, 2, 3]
    other = artifact_factory("1.0.0", name="vehicle-det")
    response = operator_client.post(
        "/api/v1/releases/", {"artifact": other.pk, "hardware_models": [hardware.name]}, format="json"
    )
    # Higher than every serial so far: a device keeps one rollback floor across models.
    assert response.json()["serial"] == 4


def test_deleting_an_artifact_a_release_uses_is_refused(operator_client, release_factory):
    release = release_factory()
    assert_error_body(operator_client.delete(f"/api/v1/artifacts/{release.artifact_id}/"), 409, "in_use")
    assert operator_client.delete(f"/api/v1/releases/{release.pk}/").status_code == 204
    assert operator_client.delete(f"/api/v1/artifacts/{release.artifact_id}/").status_code == 204
    assert not Release.objects.exists()


def test_operator_drives_a_deployment_through_the_api(
    operator_client, api_client_for, release_factory, fleet_devices, outbox
):
    release = release_factory()
    devices = fleet_devices(4)
    body = {
        "name": "api rollout",
        "release": release.pk,
        "targets": {"devices": [d.device_id for d in devices]},
        "canary_count": 1,
        "waves": [50, 100],
        "pause_failure_rate": 0.5,
        "min_finished": 1,
    }
    assert api_client_for("viewer").post("/api/v1/deployments/", body, format="json").status_code == 403
    created = operator_client.post("/api/v1/deployments/", body, format="json")
    assert created.status_code == 201, created.content
    url = f"/api/v1/deployments/{created.json()['id']}/"
    assert operator_client.post(url + "start/").json()["state"] == "running"
    progress = operator_client.get(url + "progress/").json()
    assert progress["total"] == 4 and progress["counts"]["notified"] == 1
    assert [w["label"] for w in progress["waves"]] == ["canary", "50%", "100%"]
    assert (
        operator_client.post(url + "pause/", {"reason": "night"}, format="json").json()["state"] == "paused"
    )
    assert operator_client.post(url + "resume/").json()["state"] == "running"
    aborted = operator_client.post(url + "abort/", {"reason": "bad labels"}, format="json").json()
    assert (aborted["state"], aborted["state_reason"]) == ("aborted", "bad labels")
    assert_error_body(operator_client.post(url + "resume/"), 409, "invalid_state")
    updates = operator_client.get(url + "updates/", {"state": "cancelled"}).json()["results"]
    assert len(updates) == 4
    actions = set(AuditEntry.objects.filter(object_type="deployment").values_list("action", flat=True))
    assert {
        "deployment.create",
        "deployment.start",
        "deployment.paused",
        "deployment.running",
        "deployment.aborted",
    } <= actions


def test_conflict_through_the_api_names_devices_and_deployment(
    operator_client, release_factory, fleet_devices, outbox
):
    release = release_factory()
    devices = fleet_devices(2)
    body = {"name": "a", "release": release.pk, "targets": {"devices": [d.device_id for d in devices]}}
    first = operator_client.post("/api/v1/deployments/", body, format="json").json()["id"]
    operator_client.post(f"/api/v1/deployments/{first}/start/")
    error = assert_error_body(
        operator_client.post("/api/v1/deployments/", body, format="json"), 409, "conflict"
    )
    assert error["fields"]["deployments"] == [first]
    assert sorted(error["fields"]["devices"]) == sorted(d.device_id for d in devices)
