"""The operator web UI in a real browser (Debian's Chromium, Playwright) against a live server, a real
database, the embedded broker, the ingest and simulated cameras: what an operator does, end to end.

Screenshots of each step at 1280 and 768 px go to var/screenshots/.
"""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect

from tests.factories import DeviceGroupFactory, SiteFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what}")


def token_for(group, *, uses: int, site=None) -> str:
    from devices.enrollment import enrollment_token_create
    from devices.models import HardwareModel
    from fleet.audit import Actor

    issued = enrollment_token_create(
        actor=Actor.system("test"), name=f"sim {group.name}", max_uses=uses, site=site,
        hardware_model=HardwareModel.objects.get(name="sim-cam"), groups=[group], tags=["simulated"],
    )  # fmt: skip
    return issued.key


def test_enroll_a_camera_with_a_token_from_the_ui_and_watch_it_live(ui, stack, tmp_path):
    """Log in; create an enrollment token; enroll a simulated camera with the copied line; find it by
    search; see its metrics chart and an event thumbnail arrive; send a command; revoke it."""
    from devices.models import Device

    site = SiteFactory(name="Lisbon store", timezone="Europe/Lisbon")
    DeviceGroupFactory(name="storefronts")
    UserFactory(username="ada", role="admin")
    ui.sign_in("ada")
    expect(ui.page.get_by_role("heading", name="Fleet")).to_be_visible()
    ui.shot("dashboard-empty")

    page = ui.go("/enrollment-tokens/")
    page.get_by_label("Name").fill("Lisbon install day")
    page.get_by_label("Site").select_option(label=site.name)
    page.get_by_label("Hardware model").select_option(label="sim-cam")
    page.get_by_label("Groups").select_option(label="storefronts")
    page.get_by_label("Tags").fill("outdoor, lte")
    page.get_by_role("button", name="Create token").click()
    line = page.locator("#enroll-line").inner_text()
    assert line.startswith("python -m edge enroll --server ") and "--token fet_" in line
    ui.shot("enrollment-token-created")

    # The technician's part: the copied line, run as printed (its own state dir and serial).
    identity_dir = tmp_path / "camera" / "dev-00000"
    args = [*shlex.split(line)[1:], "--state-dir", str(identity_dir), "--serial", "LIS-0001"]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    device = Device.objects.get(serial="LIS-0001")
    assert device.site == site and sorted(device.tags.values_list("name", flat=True)) == ["lte", "outdoor"]
    # The camera runs (the simulator takes over the identity the CLI stored).
    from edge.simulate import Simulator

    def no_second_enrollment(csr, serial):
        raise AssertionError("the camera should use the identity the enroll line stored")

    from edge.sim.settings import SimSettings

    sim = Simulator(
        devices=1,
        state_dir=tmp_path / "camera",
        enroll=no_second_enrollment,
        settings=SimSettings(hardware_model="sim-cam", telemetry_s=1.0, events_per_min=40),
    )
    stack.sims.append(sim)
    assert sim.start(timeout=30)

    page = ui.go("/cameras/")
    page.get_by_label("Search").fill("LIS-0001")
    page.get_by_role("button", name="Filter").click()
    row = page.locator("table.devices tbody tr")
    expect(row).to_have_count(1)
    expect(row.first).to_contain_text("LIS-0001")
    ui.shot("cameras-search")
    row.first.get_by_role("link", name="LIS-0001").click()
    expect(page.get_by_role("heading", name="LIS-0001")).to_be_visible()
    # Telemetry every second and events every ~1.5 s: the chart and a thumbnail arrive by themselves.
    expect(page.locator('.chart[data-key="cpu"] canvas')).to_be_visible(timeout=30_000)
    expect(page.locator("#camera-events img").first).to_be_visible(timeout=40_000)
    page.reload()  # the status card is as of page load
    expect(page.locator("[data-connectivity]")).to_have_text("online")
    expect(page.locator("#camera-events img").first).to_be_visible()
    ui.shot("camera-live")

    page.get_by_role("button", name="Reboot").click()
    expect(page.locator(".msg.success")).to_contain_text("reboot sent")
    expect(page.locator('#camera-commands tr[data-command="reboot"] .badge')).to_have_text(
        "succeeded", timeout=20_000
    )

    # An event page: the snapshot with its box drawn, and a way to ask for the clip.
    page.locator("#camera-events .thumb:has(img) a.pic").first.click()
    expect(page.locator(".snapshot img")).to_be_visible()
    box = page.locator(".snapshot .bbox").bounding_box()
    assert box and box["width"] > 2 and box["height"] > 2
    ui.shot("event")
    page.get_by_role("button", name="Mark reviewed").click()
    expect(page.locator(".msg.success")).to_contain_text("1 event marked reviewed")
    page.get_by_role("button", name="Request clip").click()
    expect(page.locator(".msg.success")).to_contain_text("Clip requested")

    # Events review across the fleet: grid and timeline.
    page = ui.go("/events/")
    expect(page.locator(".thumbs .thumb").first).to_be_visible()
    expect(page.locator(".timeline a.tick").first).to_be_attached()
    ui.shot("events-review")

    # Revoke: the certificate is revoked and the broker cuts the camera off (it cannot come back).
    page = ui.go(f"/cameras/{device.device_id}/")
    page.locator("summary", has_text="Revoke…").click()
    page.get_by_role("button", name=f"Revoke {device.name}").click()
    expect(page.locator(".msg.success")).to_contain_text("revoked")
    expect(page.locator("table .badge.revoked").first).to_be_visible()
    wait_for(lambda: sim.devices[0].stats.disconnects >= 2, 20, "the revoked camera is disconnected")
    time.sleep(2)
    assert not sim.devices[0].connected
    ui.shot("camera-revoked")


def test_ship_a_model_with_a_staged_rollout_pause_resume_and_a_failing_canary(ui, stack):
    """Upload a model, sign a release, deploy it to a group, watch it advance, pause, resume; then a
    failing canary pauses the next rollout on its own, and it is rolled back."""
    from tests.ota.conftest import onnx_model_bytes

    fleet_group, canary_group = DeviceGroupFactory(name="street"), DeviceGroupFactory(name="street-canary")
    stack.simulate(devices=3, token=token_for(fleet_group, uses=3), name="street")
    flaky = stack.simulate(
        devices=1, token=token_for(canary_group, uses=1), fail_health=1.0, name="canary", seed=1
    )
    UserFactory(username="grace", role="operator")
    ui.sign_in("grace")

    page = ui.go("/updates/artifacts/upload/")
    page.get_by_label("Name").fill("person-det")
    page.get_by_label("Version").fill("2.0.0")
    page.get_by_label("Hardware models").select_option(label="sim-cam")
    page.get_by_label("File").set_input_files(
        {"name": "not-a-model.onnx", "mimeType": "application/octet-stream", "buffer": b"junk"}
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".field.invalid .error")).to_contain_text("Invalid ONNX model")  # next to the file
    expect(page.locator(".form-errors")).to_contain_text("Not a valid ONNX model")
    ui.shot("artifact-invalid")
    page.get_by_label("File").set_input_files(
        {"name": "person-det.onnx", "mimeType": "application/octet-stream", "buffer": onnx_model_bytes()}
    )
    page.get_by_label("Version").fill("2.0.0")
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", name="Sign a release")).to_be_visible()
    page.get_by_role("button", name="Sign release").click()
    expect(page.locator('[data-verification="ok"]')).to_be_visible()
    ui.shot("release")

    page.get_by_role("link", name="Deploy this release").click()
    page.locator("#id_name").fill("street 2.0")
    page.locator("#id_groups").select_option(label="street")
    expect(page.locator("#matches [data-matches]")).to_have_attribute("data-matches", "3")
    page.locator("#id_waves").fill("50, 100")
    page.locator("#id_soak_s").fill("6")  # time to pause between waves
    ui.shot("deployment-create")
    page.get_by_role("button", name="Create deployment").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", re.compile("running|completed"))
    wait_for(lambda: int(page.locator("[data-finished]").inner_text()) >= 1, 30, "the canary finishes")
    ui.shot("deployment-running")
    expect(page.locator("[data-state]")).to_have_attribute(
        "data-state", "running"
    )  # soaking after the canary
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "paused")
    waiting = int(page.locator("[data-count-pending]").inner_text())  # not yet told: 1 or 2 by timing
    assert waiting >= 1
    ui.shot("deployment-paused")
    time.sleep(8)  # longer than the soak: a paused rollout notifies nobody new
    page.reload()  # cameras told before the pause may finish meanwhile; nobody new is told
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "paused")
    expect(page.locator("[data-count-pending]")).to_have_text(str(waiting))
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "completed", timeout=60_000)
    expect(page.locator("[data-finished]")).to_have_text("3")
    ui.shot("deployment-completed")

    # The next release: the failing camera is the canary; the pause threshold trips on it.
    from devices.models import HardwareModel
    from fleet.audit import Actor
    from ota.models import ModelArtifact
    from ota.services import artifact_create, release_create

    system = Actor.system("test")
    hw = HardwareModel.objects.get(name="sim-cam")
    artifact = artifact_create(
        actor=system,
        name="person-det",
        version="2.1.0",
        file=io.BytesIO(onnx_model_bytes(size=16)),
        hardware_models=[hw],
    )
    release = release_create(actor=system, artifact=artifact, hardware_models=["sim-cam"])
    assert ModelArtifact.objects.count() == 2
    page = ui.go(f"/updates/deployments/new/?release={release.pk}")
    page.locator("#id_name").fill("street 2.1")
    page.locator("#id_groups").select_option(label=["street", "street-canary"])
    expect(page.locator("#matches [data-matches]")).to_have_attribute("data-matches", "4")
    page.locator("#id_canary_devices").fill(flaky.devices[0].device_id)
    page.locator("#id_canary_count").fill("0")
    page.locator("#id_pause_failure_rate").fill("0.5")
    page.locator("#id_abort_failure_rate").fill("")  # pause, do not abort: the operator decides
    page.get_by_role("button", name="Create deployment").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "paused", timeout=30_000)
    expect(page.locator("[data-state-reason]")).to_contain_text("failure rate")
    expect(page.locator(f'[data-failing="{flaky.devices[0].device_id}"]')).to_contain_text(
        "health_check_failed"
    )
    ui.shot("deployment-canary-failed")
    page.locator("summary", has_text="Roll back…").click()
    page.get_by_role("button", name="Roll back street 2.1").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "rolled_back")
    ui.shot("deployment-rolled-back")
    page = ui.go("/updates/deployments/?tab=finished")
    expect(page.locator("table tbody")).to_contain_text("street 2.1")


def test_a_viewer_sees_no_write_buttons_and_a_forged_post_is_refused(ui, stack):
    from fleet.models import AuditEntry

    group = DeviceGroupFactory(name="yard")
    sim = stack.simulate(devices=1, token=token_for(group, uses=1), name="yard")
    UserFactory(username="vic", role="viewer")
    ui.sign_in("vic")
    device_id = sim.devices[0].device_id
    page = ui.go(f"/cameras/{device_id}/")
    expect(page.locator("h1")).to_be_visible()
    for label in ("Reboot", "Take snapshot", "Revoke…"):
        expect(page.get_by_text(label, exact=True)).to_have_count(0)
    page = ui.go("/cameras/")
    expect(page.locator("#bulk-form")).to_have_count(0)
    page = ui.go("/updates/deployments/")
    expect(page.get_by_role("link", name="New deployment")).to_have_count(0)
    ui.shot("viewer-deployments")
    # A hand-made POST with a valid session and CSRF token: the server still says no.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    answer = page.request.post(
        f"{stack.url}/cameras/{device_id}/action/",
        form={"action": "revoke", "csrfmiddlewaretoken": csrf},
        headers={"Referer": stack.url + "/"},
    )
    assert answer.status == 403
    assert not AuditEntry.objects.filter(action="device.certificates_revoke").exists()
    assert sim.devices[0].connected


def _release_with_an_int8_build():
    """NanoDet-g fp32 for the simulated cameras and its int8 build for an ARM model, in one release."""
    from devices.models import HardwareModel
    from devices.services import hardware_model_create
    from fleet.audit import Actor
    from ota.services import artifact_create, release_create
    from tests.edge.detector_models import default_model

    system = Actor.system("test")
    arm = hardware_model_create(actor=system, data={"name": "cam-arm", "cpu_arch": "arm64", "ram_mb": 512})
    sim_cam = HardwareModel.objects.get(name="sim-cam")
    built = {}
    for variant, version, hardware in (("fp32", "3.0.4", sim_cam), ("int8", "3.0.4-int8", arm)):
        with default_model(variant).open("rb") as fh:
            built[variant] = artifact_create(
                actor=system, name="nanodet-g", version=version, file=fh, hardware_models=[hardware]
            )
    return release_create(
        actor=system,
        artifact=built["fp32"],
        hardware_models=["sim-cam", arm.name],
        artifacts={arm.name: built["int8"]},
        version="3.0.4",
    )


def test_every_page_renders_without_console_errors_at_both_widths(ui, stack):
    """Every page an admin can reach from the navigation, with data in it, at 1280 and 768 px."""
    from devices.models import Device, DeviceGroup

    group = DeviceGroupFactory(name="crawl")
    stack.simulate(
        devices=2,
        token=token_for(group, uses=2, site=SiteFactory(name="Osaka street", timezone="Asia/Tokyo")),
        name="crawl",
    )
    UserFactory(username="root", role="admin")
    ui.sign_in("root")
    wait_for(lambda: Device.objects.filter(events__isnull=False).exists(), 30, "an event")
    device = Device.objects.filter(groups__in=DeviceGroup.objects.filter(name="crawl")).first()
    release = _release_with_an_int8_build()
    paths = [
        "/", "/cameras/", f"/cameras/{device.device_id}/", "/events/", "/alerts/", "/updates/deployments/",
        "/updates/deployments/new/", "/updates/releases/", "/updates/releases/new/",
        f"/updates/releases/{release.pk}/", "/updates/artifacts/", "/updates/artifacts/upload/",
        "/sites/", "/sites/new/", "/groups/", "/saved-filters/", "/enrollment-tokens/", "/bandwidth-policies/",
        "/bandwidth-policies/new/", "/alert-rules/", "/alert-rules/new/", "/account/tokens/", "/account/users/",
        "/account/password/", "/audit/", "/dead-letters/", "/api/docs/", "/admin/",
    ]  # fmt: skip
    for path in paths:
        page = ui.go(path)
        expect(page.locator("h1, .swagger-ui, #content").first).to_be_visible()
        page.wait_for_load_state("networkidle")
        if path not in ("/api/docs/", "/admin/"):
            assert not ui.unlabelled(), f"{path}: form controls without a label: {ui.unlabelled()}"
            ui.shot(path.strip("/").replace("/", "-") or "dashboard")
    event = ui.go("/events/").locator(".thumb:has(img) a.pic").first
    event.click()
    ui.shot("event-page")
