import threading

import pytest
from django.core.management import call_command
from fleet.demo import InlineBeat

from accounts.models import User
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


def test_demo_registers_the_default_model_and_its_int8_build_as_releases(tmp_path, settings):
    """The demo's NanoDet-g artifacts, as `make model` built them: OTA artifacts like any other."""
    import io

    from fleet.demo import demo_models_register, simulated_fleet_prepare

    from edge.vision.models import COCO_LABELS
    from ota.models import ModelArtifact, Release

    settings.DATA_DIR, settings.STORAGE_BACKEND, settings.MEDIA_ROOT = tmp_path, "local", tmp_path / "media"
    demo_seed(devices_per_site=1)
    out = io.StringIO()
    simulated_fleet_prepare(devices=1, stdout=out)  # makes the OTA keys, then registers
    artifacts = {a.version: a for a in ModelArtifact.objects.filter(name="nanodet-g")}
    assert set(artifacts) == {"3.0.4", "3.0.4-int8"}
    for artifact in artifacts.values():
        assert artifact.input_shape == [1, 3, 416, 416] and artifact.labels == list(COCO_LABELS)
    hardware = {
        r.artifact.version: sorted(r.hardware_models.values_list("name", flat=True))
        for r in Release.objects.filter(artifact__name="nanodet-g")
    }
    assert hardware == {"3.0.4": ["edgecam-x86", "sim-cam"], "3.0.4-int8": ["edgecam-arm64-npu"]}
    assert "nanodet-g@3.0.4 registered" in out.getvalue()
    assert demo_models_register(stdout=out) == []  # once
