"""A release with one artifact per hardware model: NanoDet-g fp32 for the x86 cameras and its int8 build
for the low-power ARM ones (both from `make model`), each signed in its own manifest; every camera is
offered, and verifies, the build for its hardware; gates compare cohorts per artifact; a rollback
re-signs every build."""

from __future__ import annotations

import pytest
from django.utils import timezone

from ota.errors import OtaError
from ota.models import Deployment
from ota.services import artifact_create, deployment_abort, release_create, tick
from protocol.errors import ManifestError
from tests.edge.detector_models import default_model
from tests.factories import DeviceFactory, HardwareModelFactory, SiteFactory
from tests.ota.test_ota_gates import report_quality
from tests.ota.test_ota_rollout import deploy, finish

pytestmark = pytest.mark.django_db


def artifact(system, version: str, variant: str, *hardware):
    """person-det `version`: NanoDet-g's `variant` build (make model), for `hardware` (none: any)."""
    with default_model(variant).open("rb") as fh:
        return artifact_create(
            actor=system, name="person-det", version=version, file=fh, hardware_models=list(hardware)
        )


@pytest.fixture
def builds(system, root_key_path):
    """cam-x86 and cam-arm; artifacts person-det 2.0.0 (fp32) and 2.0.0-int8."""
    x86, arm = HardwareModelFactory(name="cam-x86"), HardwareModelFactory(name="cam-arm")

    def make(version: str = "2.0.0"):
        fp32, int8 = artifact(system, version, "fp32", x86), artifact(system, f"{version}-int8", "int8", arm)
        release = release_create(
            actor=system,
            artifact=fp32,
            hardware_models=["cam-x86", "cam-arm"],
            artifacts={"cam-arm": int8},
            version=version,
        )
        return release, fp32, int8

    return x86, arm, make


def test_each_build_is_signed_for_its_hardware_under_one_serial(builds):
    _, _, make = builds
    release, fp32, int8 = make()
    (variant,) = release.artifacts.all()
    main, arm = release.manifest["signed"], variant.manifest["signed"]
    assert (main["hardware_models"], main["sha256"], main["size"]) == (["cam-x86"], fp32.sha256, fp32.size)
    assert (arm["hardware_models"], arm["sha256"], arm["size"]) == (["cam-arm"], int8.sha256, int8.size)
    assert int8.size < fp32.size / 2  # the int8 build is the small one
    for key in ("model", "version", "serial", "expires"):
        assert main[key] == arm[key]
    assert sorted(release.hardware_models.values_list("name", flat=True)) == ["cam-arm", "cam-x86"]


def test_bad_per_hardware_artifacts_are_refused_with_the_reason(system, builds):
    _, _, make = builds
    _, fp32, int8 = make()
    with pytest.raises(OtaError, match="must be for the release's hardware models: cam-mips"):
        release_create(actor=system, artifact=fp32, hardware_models=["cam-x86"], artifacts={"cam-mips": int8})
    with pytest.raises(OtaError, match="must serve at least one of its hardware models"):
        release_create(actor=system, artifact=fp32, hardware_models=["cam-arm"], artifacts={"cam-arm": int8})
    # Swapped: the fp32 artifact (x86 only) would serve cam-arm.
    with pytest.raises(OtaError, match="does not target cam-arm"):
        release_create(
            actor=system, artifact=fp32, hardware_models=["cam-x86", "cam-arm"], artifacts={"cam-x86": int8}
        )


def test_every_camera_is_offered_and_verifies_the_build_for_its_hardware(system, builds, outbox, sim):
    x86, arm, make = builds
    release, fp32, int8 = make()
    site = SiteFactory()
    seen = timezone.now()
    cams = [DeviceFactory(hardware_model=hw, site=site, last_seen_at=seen) for hw in (x86, x86, arm, arm)]
    deployment = deploy(system, release, cams)
    for cam in cams:
        (offer,) = outbox.offers(cam.device_id)
        device = sim(cam.device_id, hardware=cam.hardware_model.name)
        manifest = device.verify(offer)
        expected = fp32 if cam.hardware_model == x86 else int8
        assert (manifest.sha256, manifest.size) == (expected.sha256, expected.size)
        # The other hardware's manifest is refused by the same verifier: a camera cannot take the wrong build.
        other = sim(cam.device_id, hardware="cam-arm" if cam.hardware_model == x86 else "cam-x86")
        with pytest.raises(ManifestError) as err:
            other.verify(offer)
        assert err.value.reason == "incompatible_hardware"
        finish(device, outbox, cam.device_id)
    deployment.refresh_from_db()
    assert deployment.state == "completed"


def test_gates_compare_cohorts_per_artifact_and_a_rollback_resigns_every_build(system, builds, outbox, sim):
    x86, arm, make = builds
    old, _, _ = make("1.0.0")
    site = SiteFactory()
    seen = timezone.now()
    cams = [DeviceFactory(hardware_model=hw, site=site, last_seen_at=seen) for hw in (x86, arm) * 4]
    first = deploy(system, old, cams)
    for cam in cams:
        finish(sim(cam.device_id, hardware=cam.hardware_model.name), outbox, cam.device_id)
    first.refresh_from_db()
    assert first.state == "completed"
    new, _, _ = make("2.0.0")
    outbox.clear()
    canaries = [c.device_id for c in cams[:4]]  # two of each hardware
    gated = deploy(
        system,
        new,
        cams,
        canary_devices=canaries,
        waves=[100],
        auto_rollback=True,
        gates={"min_devices": 2, "min_frames": 500, "latency_p95_regression": 0.25, "on_fail": "abort"},
    )
    for cam in cams[:4]:
        finish(
            sim(cam.device_id, hardware=cam.hardware_model.name, installed=old.serial), outbox, cam.device_id
        )
        # The int8 build is slow on the ARM cameras; the fp32 one is fine on x86.
        slow = cam.hardware_model == arm
        report_quality(cam, version="2.0.0", p95=90.0 if slow else 41.0)
    for cam in cams[4:]:
        report_quality(cam, version="1.0.0", p95=40.0)
    tick()
    gated.refresh_from_db()
    gate = gated.gate_results[0]
    by_hw = {c["hardware_model"]: c for c in gate["cohorts"]}
    assert by_hw["cam-x86"]["state"] == "passed" and by_hw["cam-arm"]["state"] == "failed"
    assert by_hw["cam-arm"]["artifact"].startswith("person-det@2.0.0-int8 (")
    assert by_hw["cam-x86"]["artifact"].startswith("person-det@2.0.0 (")
    assert by_hw["cam-arm"]["candidate"]["devices"] == 2 and by_hw["cam-arm"]["control"]["devices"] == 2
    reason = gate["reason"]
    assert (reason["hardware_model"], reason["metric"]) == ("cam-arm", "latency_p95_ms")
    assert reason["artifact"] == by_hw["cam-arm"]["artifact"]
    # on_fail abort + auto_rollback: the canaries get 1.0.0 back, each its own build, under a new serial.
    assert gated.state == "rolled_back"
    (child,) = Deployment.objects.filter(rollback_of=gated)
    again = child.release
    assert again.serial > new.serial and again.version == "1.0.0"
    (variant,) = again.artifacts.all()
    assert variant.artifact == old.artifacts.get().artifact and again.artifact == old.artifact
    deployment_abort(actor=system, deployment=child)


def test_the_release_page_lists_its_builds(builds, client):
    from django.urls import reverse

    from tests.factories import UserFactory

    _, _, make = builds
    release, _, int8 = make()
    client.force_login(UserFactory(role="viewer"))
    page = client.get(reverse("ota:release", args=[release.pk])).content.decode()
    assert 'data-build="cam-arm"' in page and str(int8) in page


def test_an_operator_signs_a_release_with_per_hardware_builds_from_the_web_form(
    system, root_key_path, client
):
    """The form's "Builds per hardware": each picked build serves the release's hardware it targets,
    as the API's `artifacts` does; a build for none of them, or two for one, is refused by name."""
    from django.urls import reverse

    from ota.models import Release
    from tests.factories import UserFactory

    x86, arm = HardwareModelFactory(name="cam-x86"), HardwareModelFactory(name="cam-arm")

    fp32, int8 = artifact(system, "2.0.0", "fp32", x86), artifact(system, "2.0.0-int8", "int8", arm)
    other_int8, anywhere = artifact(system, "2.0.0-int8b", "int8", arm), artifact(system, "2.0.0-any", "int8")
    client.force_login(UserFactory(role="operator"))
    url = reverse("ota:release-create")
    form = {
        "artifact": fp32.pk,
        "hardware_models": [x86.pk, arm.pk],
        "version": "2.0.0",
        "min_agent_version": "1.0",
    }
    assert "Builds per hardware" in client.get(url).content.decode()

    refused = client.post(url, {**form, "builds": [int8.pk, other_int8.pk]}).content.decode()
    assert "Two builds for cam-arm: person-det@2.0.0-int8" in refused and "2.0.0-int8b" in refused
    refused = client.post(url, {**form, "builds": [anywhere.pk]}).content.decode()
    assert "names no hardware model" in refused
    refused = client.post(url, {**form, "hardware_models": [x86.pk], "builds": [int8.pk]}).content.decode()
    assert "person-det@2.0.0-int8 targets none of the release&#x27;s hardware models (cam-arm)" in refused
    assert not Release.objects.exists()

    signed = client.post(url, {**form, "builds": [int8.pk]})
    release = Release.objects.get()
    assert signed.status_code == 302 and signed.url == reverse("ota:release", args=[release.pk])
    (build,) = release.artifacts.select_related("hardware_model", "artifact")
    assert (build.hardware_model, build.artifact, release.artifact) == (arm, int8, fp32)
    assert (
        build.manifest["signed"]["sha256"] == int8.sha256
        and build.manifest["signed"]["serial"] == release.serial
    )
    page = client.get(signed.url).content.decode()
    assert 'data-build="cam-arm"' in page and 'data-verification="ok"' in page
    assert "2 manifests (one per build)" in page  # each checked as a camera of its hardware would
    # A build's manifest changed after signing: the page says which one fails, and why.
    build.manifest["signed"]["size"] += 1
    build.save(update_fields=["manifest"])
    page = client.get(signed.url).content.decode()
    assert 'data-verification="failed"' in page and "the manifest for cam-arm: bad_signature" in page
