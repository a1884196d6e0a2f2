"""The web UI's write paths through Django's test client: each calls the app's services, audits with
source "ui", and answers a refusal with the service's reason on the page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from fleet.audit import Actor
from fleet.models import AuditEntry
from tests.factories import DeviceFactory, DeviceGroupFactory, HardwareModelFactory, SiteFactory, UserFactory
from tests.ota.conftest import onnx_model_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    user = UserFactory(role="operator")
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def admin(client):
    user = UserFactory(role="admin")
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def ota_ready(db, tmp_path, settings):
    from ota.services import keys_init

    settings.STORAGE_BACKEND, settings.MEDIA_ROOT = "local", tmp_path / "media"
    keys_init(actor=Actor.system("test"), root_out=tmp_path / "root.pem")
    return HardwareModelFactory(name="cam-x1")


def make_event(device, **fields):
    from telemetry.models.events import Event

    values = {"event_id": f"e-{Event.objects.count()}", "camera": "cam0", "label": "person", "score": 0.9,
              "bbox": [0.1, 0.1, 0.2, 0.3], "start": timezone.now()}  # fmt: skip
    return Event.objects.create(device=device, **{**values, **fields})


def test_enrollment_token_secret_is_shown_once_with_the_enroll_line(admin, settings):
    settings.PUBLIC_URL = "https://fleet.example.com"
    site = SiteFactory()
    response = admin.post(
        reverse("devices:enrollment-tokens"),
        {"name": "install day", "max_uses": 3, "expires_in_hours": 2, "site": site.pk, "tags": "lte"},
    )
    page = response.content.decode()
    assert "python -m edge enroll --server https://fleet.example.com --token fet_" in page
    again = admin.get(reverse("devices:enrollment-tokens")).content.decode()
    assert "--token fet_" not in again and "install day" in again  # listed, the secret gone
    entry = AuditEntry.objects.get(action="enrollment_token.create")
    assert entry.source == "ui" and entry.actor == admin.user
    token_pk = entry.object_id
    admin.post(reverse("devices:enrollment-tokens"), {"revoke": token_pk})
    assert AuditEntry.objects.filter(action="enrollment_token.revoke", source="ui").exists()


def test_api_token_is_minted_in_the_session_and_shown_once(operator):
    from accounts.models import ApiToken

    page = operator.post(reverse("accounts:tokens"), {"name": "nightly export"}).content.decode()
    token = ApiToken.objects.get(name="nightly export")
    assert token.user == operator.user and "flt_" in page
    assert "flt_" not in operator.get(reverse("accounts:tokens")).content.decode().split("Key starts")[0]
    operator.post(reverse("accounts:tokens"), {"revoke": token.pk})
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_admin_adds_a_user_and_changes_a_role_but_not_their_own(admin):
    admin.post(
        reverse("accounts:user-create"),
        {"username": "ops2", "role": "viewer", "password": "a-long-password-1"},
    )
    from accounts.models import User

    user = User.objects.get(username="ops2")
    admin.post(reverse("accounts:user", args=[user.pk]), {"role": "operator"})
    user.refresh_from_db()
    assert user.role == "operator"
    refused = admin.post(reverse("accounts:user", args=[admin.user.pk]), {"role": "viewer"}, follow=True)
    assert "You cannot change your own role" in refused.content.decode()
    assert {e.source for e in AuditEntry.objects.filter(action__startswith="user.")} == {"ui"}


def test_events_review_filters_marks_reviewed_in_bulk_and_the_api_sees_it(operator):
    lisbon, porto = SiteFactory(name="Lisbon"), SiteFactory(name="Porto")
    a, b = DeviceFactory(site=lisbon), DeviceFactory(site=porto)
    old = make_event(a, label="vehicle", start=timezone.now() - dt.timedelta(hours=3))
    new = make_event(b, label="person")
    page = operator.get(reverse("telemetry:events"), {"site": porto.pk}).content.decode()
    assert f'data-event="{new.pk}"' in page and f'data-event="{old.pk}"' not in page
    jump = operator.get(
        reverse("telemetry:events"),
        {"before": (timezone.now() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")},
    )
    assert (
        f'data-event="{old.pk}"' in jump.content.decode()
        and f'data-event="{new.pk}"' not in jump.content.decode()
    )
    operator.post(reverse("telemetry:events-review"), {"event": [old.pk, new.pk], "reviewed": "1"})
    assert AuditEntry.objects.filter(action="event.review", source="ui").count() == 2
    api = operator.get("/api/v1/events/", {"reviewed": "false"}).json()["results"]
    assert api == []
    todo = operator.get(reverse("telemetry:events"), {"reviewed": "false"}).content.decode()
    assert "No events match" in todo


def test_alerts_are_acknowledged_in_bulk(operator):
    from telemetry.events.alerts import alert_rule_create, alerts_evaluate
    from telemetry.models.events import Alert

    alert_rule_create(
        actor=Actor.system("test"), data={"name": "people", "labels": ["person"], "min_score": 0.5}
    )
    device = DeviceFactory()
    events = [make_event(device) for _ in range(3)]
    alerts_evaluate(event_pks=[e.pk for e in events])
    alerts = list(Alert.objects.order_by("pk"))

    def listed() -> set[int]:
        page = operator.get(reverse("telemetry:alerts")).content.decode()  # opens on the unacknowledged
        return {int(v) for v in re.findall(r'<input[^>]*name="alert"[^>]*value="(\d+)"', page)}

    assert listed() == {a.pk for a in alerts}
    operator.post(reverse("telemetry:alerts-ack"), {"alert": [a.pk for a in alerts[:2]]})
    assert Alert.objects.filter(acknowledged_at__isnull=False).count() == 2
    assert listed() == {alerts[2].pk}


def test_dashboard_lists_cameras_with_problems(operator, settings):
    from telemetry.models import DeviceStatus, MetricRollup

    settings.DASHBOARD_OFFLINE_AFTER_S = 60
    now = timezone.now()
    gone = DeviceFactory(name="gone cam", last_seen_at=now - dt.timedelta(hours=3))
    DeviceStatus.objects.create(device=gone, online=False, since=now - dt.timedelta(hours=3), reason="silent")
    hot = DeviceFactory(name="hot cam", last_seen_at=now)
    DeviceStatus.objects.create(device=hot, online=True, since=now)
    MetricRollup.objects.create(
        device_id=hot.pk,
        resolution="1m",
        bucket=now.replace(second=0, microsecond=0),
        samples=1,
        temp_c_max=91.0,
    )
    page = operator.get(reverse("telemetry:dashboard-part", args=["problems"])).content.decode()
    assert "gone cam" in page and "hot cam" in page and "91 °C" in page
    counts = operator.get(reverse("telemetry:dashboard-part", args=["counts"])).content.decode()
    assert 'data-count="online">1<' in counts and 'data-count="offline">1<' in counts


def test_artifact_release_and_deployment_pages(operator, ota_ready):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from ota.models import Deployment, Release

    group = DeviceGroupFactory(name="lobby")
    DeviceFactory.create_batch(3, hardware_model=ota_ready, groups=[group], last_seen_at=timezone.now())
    bad = operator.post(
        reverse("ota:artifact-upload"),
        {"name": "person-det", "version": "1.0", "file": SimpleUploadedFile("m.onnx", b"junk")},
    )
    assert "Not a valid ONNX model" in bad.content.decode()
    upload = SimpleUploadedFile("m.onnx", onnx_model_bytes())
    done = operator.post(
        reverse("ota:artifact-upload"),
        {"name": "person-det", "version": "1.0", "file": upload, "hardware_models": [ota_ready.pk]},
    )
    assert done.status_code == 302 and "artifact=" in done.url
    artifact_pk = done.url.split("artifact=")[1]
    signed = operator.post(
        reverse("ota:release-create"),
        {"artifact": artifact_pk, "hardware_models": [ota_ready.pk], "min_agent_version": "1.0"},
    )
    release = Release.objects.get()
    assert signed.url == reverse("ota:release", args=[release.pk])
    page = operator.get(signed.url).content.decode()
    assert 'data-verification="ok"' in page and "signature valid" in page
    count = operator.get(reverse("ota:deployment-matches"), {"groups": group.pk}).content.decode()
    assert 'data-matches="3"' in count
    form = {"name": "lobby 1.0", "release": release.pk, "groups": group.pk, "canary_count": 1, "waves": "50, 100",
            "soak_s": 0, "pause_failure_rate": 0.2, "abort_failure_rate": 0.1, "min_finished": 1, "device_timeout_s": 60}  # fmt: skip
    refused = operator.post(reverse("ota:deployment-create"), form)
    assert "The pause threshold must not be above the abort threshold" in refused.content.decode()
    created = operator.post(
        reverse("ota:deployment-create"), {**form, "abort_failure_rate": 0.5, "start_now": "on"}
    )
    deployment = Deployment.objects.get()
    assert created.url == reverse("ota:deployment", args=[deployment.pk]) and deployment.state == "running"
    live = operator.get(reverse("ota:deployment-live", args=[deployment.pk])).content.decode()
    assert 'data-state="running"' in live and 'data-wave="0"' in live and "canary" in live
    operator.post(created.url, {"action": "pause"})
    deployment.refresh_from_db()
    assert deployment.state == "paused"
    bad_action = operator.post(created.url, {"action": "pause"}, follow=True)
    assert "Cannot pause a deployment that is paused" in bad_action.content.decode()
    assert {e.source for e in AuditEntry.objects.filter(object_type="deployment", actor=operator.user)} == {
        "ui"
    }
    listing = operator.get(reverse("ota:deployments"), {"tab": "active"}).content.decode()
    assert "lobby 1.0" in listing
    operator.post(created.url, {"action": "abort"})
    later = (timezone.now() + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    operator.post(
        reverse("ota:deployment-create"),
        {**form, "name": "lobby night", "abort_failure_rate": 0.5, "start_now": "on", "scheduled_at": later},
    )
    assert Deployment.objects.get(name="lobby night").state == "scheduled"
    scheduled = (
        operator.get(reverse("ota:deployments"), {"tab": "scheduled"}).content.decode().split("<tbody")[1]
    )
    assert "lobby night" in scheduled and "lobby 1.0" not in scheduled


def test_camera_page_sends_commands_and_shows_its_usage_and_history(operator):
    from telemetry.models.commands import Command

    device = DeviceFactory()
    page = operator.get(reverse("telemetry:camera", args=[device.device_id])).content.decode()
    assert "Identity" in page and "Data usage" in page and "Audit trail" in page
    operator.post(reverse("telemetry:camera-commands", args=[device.device_id]), {"name": "snapshot"})
    command = Command.objects.get()
    assert command.name == "snapshot" and command.created_by == operator.user
    part = operator.get(reverse("telemetry:camera-commands", args=[device.device_id])).content.decode()
    assert 'data-command="snapshot"' in part
    metrics = operator.get(
        reverse("telemetry:camera-metrics", args=[device.device_id]), {"range": "24h"}
    ).json()
    assert set(metrics) == {"cpu", "temp", "fps", "latency", "queue", "bytes"}


def test_bulk_revoke_needs_the_confirmation_and_names_the_count(operator, identity_pki):
    from devices.models_identity import DeviceCertificate

    devices = DeviceFactory.create_batch(2)
    for i, d in enumerate(devices):
        DeviceCertificate.objects.create(device=d, common_name=d.device_id, serial=str(1000 + i), fingerprint=f"{i:064x}",
                                         not_before=timezone.now(), not_after=timezone.now() + dt.timedelta(days=1))  # fmt: skip
    data = {
        "action": "revoke",
        "all": "on",
        "filter_query": f"device_id={devices[0].device_id},{devices[1].device_id}",
    }
    confirm = operator.post(reverse("devices:bulk"), data).content.decode()
    assert "Revoke 2 cameras?" in confirm
    operator.post(reverse("devices:bulk"), {**data, "confirmed": "1"})
    assert DeviceCertificate.objects.filter(revoked_at__isnull=False).count() == 2


def test_uplink_today_counts_each_camera_in_its_own_local_day(operator):
    import zoneinfo

    from telemetry.models import DataUsage
    from telemetry.models.policies import BandwidthPolicy

    tokyo, lisbon = SiteFactory(timezone="Asia/Tokyo"), SiteFactory(timezone="Europe/Lisbon")
    a, b = DeviceFactory(site=tokyo), DeviceFactory(site=lisbon)
    now = timezone.now()
    for device, tz, n in ((a, "Asia/Tokyo", 3 * 1024 * 1024), (b, "Europe/Lisbon", 1024)):
        local_today = now.astimezone(zoneinfo.ZoneInfo(tz)).date()
        DataUsage.objects.create(device=device, day=local_today, uplink_class="thumbnail", bytes=n)
        DataUsage.objects.create(
            device=device, day=local_today - dt.timedelta(days=1), uplink_class="clip", bytes=10**9
        )
    BandwidthPolicy.objects.create(name="fleet", max_kbps=256, daily_budget_mb=2)
    page = operator.get(reverse("telemetry:dashboard-part", args=["uplink"])).content.decode()
    assert "3.0 MiB" in page  # 3 MiB + 1 KiB today; yesterday's gigabyte is not today
    assert 'class="bad"' in page  # camera a is over the 2 MiB daily budget
