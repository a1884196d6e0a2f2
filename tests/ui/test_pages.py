"""Every page of the web UI through Django's test client: it renders, roles are enforced on the
server, writes land in the audit log with source "ui", and the API's FilterSets filter the UI too."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from devices.models import Device
from fleet.models import AuditEntry
from tests.factories import DeviceFactory, DeviceGroupFactory, SiteFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGES = [
    "home",
    "devices:list",
    "devices:sites",
    "devices:site-create",
    "devices:groups",
    "devices:group-create",
    "devices:saved-filters",
    "devices:enrollment-tokens",
    "telemetry:events",
    "telemetry:alerts",
    "telemetry:alert-rules",
    "telemetry:alert-rule-create",
    "telemetry:policies",
    "telemetry:policy-create",
    "telemetry:dead-letters",
    "ota:artifacts",
    "ota:artifact-upload",
    "ota:releases",
    "ota:release-create",
    "ota:deployments",
    "ota:deployment-create",
    "accounts:tokens",
    "accounts:users",
    "accounts:user-create",
    "accounts:password",
    "audit",
]


@pytest.fixture
def signed_in(client):
    def sign_in(role: str):
        user = UserFactory(role=role)
        client.force_login(user)
        client.user = user
        return client

    return sign_in


def test_signed_out_visitors_get_the_sign_in_page(client):
    assert client.get("/").url == reverse("login")
    assert client.get(reverse("devices:list")).url.startswith(reverse("login"))
    assert client.get(reverse("login")).status_code == 200


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_for_an_admin(signed_in, name):
    site = SiteFactory()
    DeviceFactory(site=site)
    response = signed_in("admin").get(reverse(name))
    assert response.status_code == 200, response.content[:500]
    assert b"<h1" in response.content


@pytest.mark.parametrize(
    "name", ["devices:enrollment-tokens", "accounts:users", "accounts:user-create", "telemetry:dead-letters"]
)
def test_a_viewer_is_refused_admin_and_operator_pages(signed_in, name):
    assert signed_in("viewer").get(reverse(name)).status_code == 403


def test_the_camera_page_hides_write_buttons_from_a_viewer_and_refuses_a_forged_post(signed_in):
    device = DeviceFactory()
    viewer = signed_in("viewer")
    page = viewer.get(reverse("telemetry:camera", args=[device.device_id])).content.decode()
    assert device.name in page
    assert "Reboot" not in page and "Revoke" not in page
    forged = viewer.post(reverse("telemetry:camera-action", args=[device.device_id]), {"action": "revoke"})
    assert forged.status_code == 403
    assert not AuditEntry.objects.filter(action="device.certificates_revoke").exists()


def test_the_camera_status_card_refreshes_itself(signed_in):
    from telemetry.models import DeviceStatus

    device = DeviceFactory()
    client = signed_in("viewer")
    page = client.get(reverse("telemetry:camera", args=[device.device_id])).content.decode()
    url = reverse("telemetry:camera-status", args=[device.device_id])
    assert f'hx-get="{url}"' in page and 'data-status="never_seen"' in page  # polled by htmx
    Device.objects.filter(pk=device.pk).update(last_seen_at=timezone.now(), agent_version="1.4.2")
    DeviceStatus.objects.create(device=device, online=True, since=timezone.now(), reason="birth", uptime_s=42)
    card = client.get(url).content.decode()
    assert 'data-status="online"' in card and "1.4.2" in card and "42 s" in card
    assert card.startswith('<section class="card" id="camera-status"')  # swapped in place of itself


def test_filter_options_escape_what_people_typed(signed_in):
    SiteFactory(name='<img src=x onerror="alert(1)">')
    page = signed_in("viewer").get(reverse("devices:list")).content.decode()
    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_cameras_list_filters_with_the_api_filterset(signed_in):
    lisbon, porto = SiteFactory(name="Lisbon"), SiteFactory(name="Porto")
    tag = TagFactory(name="outdoor")
    DeviceFactory(name="dock cam 1", site=lisbon, tags=[tag])
    DeviceFactory(name="yard cam 2", site=porto)
    client = signed_in("viewer")
    by_site = client.get(reverse("devices:list"), {"site": porto.pk}).content.decode()
    assert "yard cam 2" in by_site and "dock cam 1" not in by_site
    by_tag = client.get(reverse("devices:list"), {"tag": "outdoor"}).content.decode()
    assert "dock cam 1" in by_tag and "yard cam 2" not in by_tag
    search = client.get(reverse("devices:list"), {"q": "yard"}).content.decode()
    assert "yard cam 2" in search and "dock cam 1" not in search
    never = client.get(reverse("devices:list"), {"connectivity": "never_seen"}).content.decode()
    assert "yard cam 2" in never
    api = client.get("/api/v1/devices/", {"connectivity": "online"}).json()["results"]
    assert api == []  # the filter the UI gained works in the API as well


def test_bulk_tag_confirms_with_the_count_then_audits_as_ui(signed_in):
    devices = DeviceFactory.create_batch(3)
    client = signed_in("operator")
    data = {"action": "tag", "tags": "night", "device": [d.device_id for d in devices[:2]]}
    confirm = client.post(reverse("devices:bulk"), data)
    assert confirm.status_code == 200 and "2 cameras" in confirm.content.decode()
    assert not AuditEntry.objects.filter(action="device.bulk_tag").exists()
    done = client.post(reverse("devices:bulk"), {**data, "confirmed": "1"})
    assert done.status_code == 302
    entries = AuditEntry.objects.filter(action="device.bulk_tag")
    assert entries.count() == 2 and {e.source for e in entries} == {"ui"}
    assert {d.device_id for d in devices[0].tags.model.objects.get(name="night").devices.all()} == {
        d.device_id for d in devices[:2]
    }


def test_field_errors_from_a_service_land_next_to_the_field(signed_in):
    SiteFactory(name="Berlin depot")
    client = signed_in("operator")
    response = client.post(
        reverse("devices:site-create"), {"name": "Berlin depot", "timezone": "Mars/Olympus"}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "not an IANA time zone" in page
    assert 'class="field invalid"' in page


def test_saved_filter_from_the_list_is_a_dynamic_group(signed_in):
    group = DeviceGroupFactory(name="trucks")
    DeviceFactory(name="truck cam", groups=[group])
    client = signed_in("operator")
    response = client.post(
        reverse("devices:save-filter"), {"name": "Trucks", "criteria_query": f"group={group.pk}"}
    )
    assert response.status_code == 302
    later = DeviceFactory(name="new truck cam", groups=[group])  # dynamic: matches cameras added later
    page = client.get(response.url).content.decode()
    assert "truck cam" in page and later.name in page


def test_columns_are_remembered_per_user(signed_in):
    DeviceFactory(serial="SN-VISIBLE-1")
    client = signed_in("viewer")
    assert "SN-VISIBLE-1" not in client.get(reverse("devices:list")).content.decode()
    client.post(reverse("devices:columns"), {"columns": ["serial", "site"]})
    assert "SN-VISIBLE-1" in client.get(reverse("devices:list")).content.decode()
    client.user.refresh_from_db()
    assert client.user.preferences["columns.cameras"] == ["serial", "site"]


def test_sign_in_is_throttled_after_repeated_failures(client, settings):
    settings.LOGIN_FAILURES_MAX = 3
    UserFactory(username="ops")
    for _ in range(3):
        client.post(reverse("login"), {"username": "ops", "password": "wrong"})
    refused = client.post(reverse("login"), {"username": "ops", "password": "correct-horse-battery"})
    assert "Too many failed sign-ins" in refused.content.decode()
    assert AuditEntry.objects.filter(action="user.login_failed", source="ui").count() == 3


def test_pages_send_a_csp_without_inline_scripts(signed_in):
    response = signed_in("viewer").get(reverse("home"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in response.content.decode()


def test_unknown_page_is_html_and_unknown_api_path_is_json(signed_in):
    client = signed_in("viewer")
    assert "text/html" in client.get("/no-such-page/")["Content-Type"]
    assert client.get("/api/v1/no-such/").json()["error"]["code"] == "not_found"


def test_cameras_rows_escape_what_devices_and_people_typed(signed_in):
    DeviceFactory(name='<script>alert("x")</script>', serial="<b>SN</b>")
    page = signed_in("viewer").get(reverse("devices:list")).content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_a_viewer_sees_settings_forms_read_only(signed_in):
    site = SiteFactory(name="Porto")
    page = signed_in("viewer").get(reverse("devices:site", args=[site.pk])).content.decode()
    assert "can look at this but not change it" in page and "disabled" in page
    assert "Delete…" not in page and ">Save<" not in page
