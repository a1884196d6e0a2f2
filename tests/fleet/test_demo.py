import threading

import pytest
from django.core.management import call_command

from accounts.models import User
from demo.components import InlineBeat
from devices.demo import demo_seed
from devices.models import Device, Site
from fleet.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_demo_seed_is_written_through_services_once():
    assert demo_seed(devices_per_site=2) is True
    assert Site.objects.count() == 3 and Device.objects.count() == 6
    assert AuditEntry.objects.filter(action="device.create", source="system").count() == 6
    assert demo_seed() is False
    assert Device.objects.count() == 6


def test_seed_demo_command(capsys):
    call_command("seed_demo", devices_per_site=1)
    assert "seeded" in capsys.readouterr().out
    assert Device.objects.count() == 3


def test_inline_beat_runs_each_task_at_its_interval(settings):
    from celery import current_app

    calls = []

    @current_app.task(name="tests.demo_probe")
    def probe():
        calls.append(1)

    now = [100.0]
    beat = InlineBeat(
        {"probe": {"task": "tests.demo_probe", "schedule": 10.0}},
        stop=threading.Event(),
        clock=lambda: now[0],
    )
    assert beat.run_due() == ["probe"]
    now[0] = 105.0
    assert beat.run_due() == []
    now[0] = 110.5
    assert beat.run_due() == ["probe"] and len(calls) == 2


def test_admin_is_created_once_with_a_printed_password():
    from accounts.services import admin_ensure

    user, password = admin_ensure()
    assert password and user.check_password(password) and user.is_superuser
    assert admin_ensure() == (User.objects.get(username="admin"), None)


def test_demo_registers_the_default_model_as_one_release_with_an_int8_build_for_low_power_cameras(
    tmp_path, settings
):
    """The demo's NanoDet-g artifacts, as `make model` built them: OTA artifacts like any other, signed
    in one release whose ARM camera is offered the int8 build and every other camera fp32."""
    import io

    from demo.setup import demo_fleet_prepare, demo_models_register
    from edge.vision.models import COCO_LABELS
    from ota.models import ModelArtifact, Release
    from ota.selectors import release_verification

    settings.DATA_DIR, settings.STORAGE_BACKEND, settings.MEDIA_ROOT = tmp_path, "local", tmp_path / "media"
    out = io.StringIO()
    demo_fleet_prepare(devices=3, stdout=out)  # makes the OTA keys, then registers
    artifacts = {a.version: a for a in ModelArtifact.objects.filter(name="nanodet-g")}
    assert set(artifacts) == {"3.0.4", "3.0.4-int8"}
    for artifact in artifacts.values():
        assert artifact.input_shape == [1, 3, 416, 416] and artifact.labels == list(COCO_LABELS)
    (release,) = Release.objects.filter(artifact__name="nanodet-g")
    assert (release.version, release.artifact) == ("3.0.4", artifacts["3.0.4"])
    assert sorted(release.hardware_models.values_list("name", flat=True)) == [
        "edgecam-arm64-npu",
        "edgecam-x86",
        "sim-cam",
    ]
    (build,) = release.artifacts.select_related("hardware_model", "artifact")
    assert (build.hardware_model.name, build.artifact) == ("edgecam-arm64-npu", artifacts["3.0.4-int8"])
    main, int8 = release.manifest["signed"], build.manifest["signed"]
    assert (main["sha256"], int8["sha256"]) == (artifacts["3.0.4"].sha256, artifacts["3.0.4-int8"].sha256)
    assert (main["hardware_models"], int8["hardware_models"]) == (
        ["edgecam-x86", "sim-cam"],
        ["edgecam-arm64-npu"],
    )
    assert all(main[k] == int8[k] for k in ("model", "version", "serial"))
    ok, detail = release_verification(release=release)  # what the release page says: each build checked
    assert ok and "2 manifests (one per build)" in detail, detail
    assert "nanodet-g@3.0.4 registered" in out.getvalue() and "2 build(s)" in out.getvalue()
    assert demo_models_register(stdout=out) is None  # once
    assert Release.objects.count() == 1


def test_demo_cameras_are_registered_across_the_sites_each_with_a_real_clip(tmp_path, settings):
    """Registered ahead with name, site and group, so enrolling fills them in (no "never seen" rows
    beside the simulated ones); the canary is the first in id order, as a one-canary deployment picks."""
    import io

    from demo.setup import FOOTAGE_DIR, demo_fleet_prepare
    from devices.models import EnrollmentToken

    settings.DATA_DIR, settings.STORAGE_BACKEND, settings.MEDIA_ROOT = tmp_path, "local", tmp_path / "media"
    plan = demo_fleet_prepare(devices=7, stdout=io.StringIO())
    registered = list(Device.objects.filter(tags__name="demo").order_by("pk"))
    assert len(plan.cameras) == len(registered) == 9  # 3 per site: rounded up, never fewer
    assert plan.sites == 3 and {c.site for c in plan.cameras} == set(
        Site.objects.values_list("name", flat=True)
    )
    assert [c.serial for c in plan.cameras] == [d.serial for d in registered]
    assert plan.cameras[plan.canary].serial == registered[0].serial
    assert plan.cameras[plan.dark].serial == registered[-1].serial  # the camera shown going offline
    assert all(c.clip.is_file() and c.clip.parent == FOOTAGE_DIR for c in plan.cameras)
    token = EnrollmentToken.objects.get(name="demo cameras")
    assert token.max_uses == 9 and token.site is None and token.hardware_model.name == "sim-cam"
    assert demo_fleet_prepare(devices=7, stdout=io.StringIO()).cameras == plan.cameras  # a rerun: the same


def test_demo_console_is_quiet_unless_verbose(settings):
    import logging

    from demo.console import quiet_logging

    original = settings.LOGGING
    settings.LOGGING = {**original, "loggers": dict(original.get("loggers", {}))}
    try:
        quiet_logging(verbose=False)
        assert logging.getLogger().level == logging.WARNING
        assert logging.getLogger("transitions").level == logging.WARNING
        assert logging.getLogger("celery.app.trace").level == logging.WARNING
        assert logging.getLogger("amqtt").level == logging.ERROR
        assert not logging.getLogger("django.server").isEnabledFor(logging.INFO)
    finally:
        from django.utils.log import configure_logging

        # The original, not settings.LOGGING: quiet_logging wrote WARNING into that copy, and a root
        # logger left at WARNING hid INFO lines from every later test in the session.
        configure_logging(settings.LOGGING_CONFIG, original)


def test_demo_status_line_counts_what_an_operator_looks_for():
    from demo.console import Status

    line = Status(
        online=47, cameras=48, sites=3, events=120, thumbnails=118, messages_per_s=4.25, deployment="paused"
    ).line()
    assert line == (
        "47/48 cameras online at 3 sites · 120 events (118 with thumbnails) · 4.2 messages/s"
        " · deployment paused"
    )
