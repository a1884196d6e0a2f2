import pytest

from accounts.models import Role
from devices.models import Device, DeviceState
from fleet.models import AuditEntry
from tests.api_base import CrudApiContract, assert_error_body
from tests.factories import (
    DeviceFactory,
    DeviceGroupFactory,
    HardwareModelFactory,
    SavedFilterFactory,
    SiteFactory,
    TagFactory,
)


class TestSiteApi(CrudApiContract):
    url = "/api/v1/sites/"
    factory = SiteFactory

    def create_payload(self):
        return {
            "name": f"Depot {Device.objects.count()}-{AuditEntry.objects.count()}",
            "timezone": "Asia/Tokyo",
            "latitude": 35.6,
            "longitude": 139.7,
        }

    def update_payload(self):
        return {"address": "1 Harbour Road"}


class TestHardwareModelApi(CrudApiContract):
    url = "/api/v1/hardware-models/"
    factory = HardwareModelFactory

    def create_payload(self):
        return {
            "name": f"jetson-{AuditEntry.objects.count()}",
            "cpu_arch": "arm64",
            "accelerator": "gpu",
            "ram_mb": 8192,
        }

    def update_payload(self):
        return {"ram_mb": 4096}


class TestDeviceGroupApi(CrudApiContract):
    url = "/api/v1/groups/"
    factory = DeviceGroupFactory

    def create_payload(self):
        return {"name": f"trucks-{AuditEntry.objects.count()}"}

    def update_payload(self):
        return {"description": "Delivery trucks"}


class TestTagApi(CrudApiContract):
    url = "/api/v1/tags/"
    factory = TagFactory

    def create_payload(self):
        return {"name": f"night-{AuditEntry.objects.count()}"}

    def update_payload(self):
        return {"name": f"renamed-{AuditEntry.objects.count()}"}


class TestSavedFilterApi(CrudApiContract):
    url = "/api/v1/saved-filters/"
    factory = SavedFilterFactory

    def create_payload(self):
        return {"name": f"berlin-npu-{AuditEntry.objects.count()}", "criteria": {"state": ["active"]}}

    def update_payload(self):
        return {"description": "All active cameras"}


class TestDeviceApi(CrudApiContract):
    url = "/api/v1/devices/"
    factory = DeviceFactory
    lookup = "device_id"

    def make(self, **kwargs):
        kwargs.setdefault("state", DeviceState.PROVISIONING)  # deletable
        return DeviceFactory(**kwargs)

    def create_payload(self):
        return {
            "name": "Gate camera",
            "serial": f"SN-NEW-{AuditEntry.objects.count()}",
            "tags": ["gate", "outdoor"],
        }

    def update_payload(self):
        return {"name": "Gate camera 2"}

    def test_server_assigns_device_id_and_creates_tags(self, operator_client):
        response = operator_client.post(self.url, self.create_payload(), format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["device_id"].startswith("cam-")
        assert body["tags"] == ["gate", "outdoor"]
        assert body["state"] == "provisioning"

    def test_duplicate_device_id_is_a_409(self, operator_client):
        DeviceFactory(device_id="cam-dup-1")
        response = operator_client.post(self.url, {"device_id": "cam-dup-1", "name": "x"}, format="json")
        error = assert_error_body(response, 409, "duplicate")
        assert "device_id" in error["fields"]

    def test_invalid_device_id_is_a_field_error(self, operator_client):
        response = operator_client.post(self.url, {"device_id": "A/B#", "name": "x"}, format="json")
        assert "device_id" in assert_error_body(response, 400, "validation_error")["fields"]

    def test_wrong_type_is_a_field_error(self, operator_client):
        response = operator_client.post(self.url, {"name": "x", "site": "not-a-number"}, format="json")
        assert "site" in assert_error_body(response, 400, "validation_error")["fields"]

    def test_active_device_cannot_be_deleted(self, operator_client):
        device = DeviceFactory(state=DeviceState.ACTIVE)
        assert_error_body(operator_client.delete(self.detail_url(device)), 409, "invalid_state")
        assert Device.objects.filter(pk=device.pk).exists()

    def test_filters_by_site_tag_and_hardware_and_searches_name(self, operator_client):
        site, other = SiteFactory(), SiteFactory()
        hw = HardwareModelFactory()
        lobby = TagFactory(name="lobby")
        night = TagFactory(name="night")
        match = DeviceFactory(site=site, hardware_model=hw, tags=[lobby, night], name="Lobby east")
        DeviceFactory(site=site, hardware_model=hw, tags=[lobby], name="Lobby west")
        DeviceFactory(site=other, hardware_model=hw, tags=[lobby, night], name="Lobby far")
        rows = operator_client.get(
            self.url, {"site": site.pk, "tag": ["lobby", "night"], "hardware_model": hw.pk}
        ).json()["results"]
        assert [r["device_id"] for r in rows] == [match.device_id]
        rows = operator_client.get(self.url, {"q": "lobby e"}).json()["results"]
        assert [r["device_id"] for r in rows] == [match.device_id]

    def test_unknown_filter_value_is_a_400(self, operator_client):
        assert_error_body(operator_client.get(self.url, {"site": 987654}), 400)
        assert_error_body(operator_client.get(self.url, {"state": "flying"}), 400)

    def test_lifecycle_transitions(self, operator_client):
        device = DeviceFactory(state=DeviceState.ACTIVE)
        url = f"{self.detail_url(device)}transition/"
        response = operator_client.post(
            url, {"state": "quarantined", "reason": "tamper alarm"}, format="json"
        )
        assert response.status_code == 200 and response.json()["state"] == "quarantined"
        entry = AuditEntry.objects.get(action="device.quarantined", object_id=str(device.pk))
        assert entry.before["state"] == "active" and entry.after["reason"] == "tamper alarm"
        assert operator_client.post(url, {"state": "decommissioned"}, format="json").status_code == 200
        assert_error_body(
            operator_client.post(url, {"state": "active"}, format="json"), 409, "invalid_transition"
        )

    def test_viewer_cannot_transition(self, api_client_for):
        device = DeviceFactory()
        response = api_client_for(Role.VIEWER).post(
            f"{self.detail_url(device)}transition/", {"state": "quarantined"}
        )
        assert_error_body(response, 403)


@pytest.mark.django_db
class TestBulkActions:
    def test_bulk_tag_group_and_move(self, operator_client):
        devices = DeviceFactory.create_batch(3)
        ids = [d.device_id for d in devices]
        group, site = DeviceGroupFactory(), SiteFactory()
        r = operator_client.post(
            "/api/v1/devices/bulk/tag/", {"device_ids": ids, "add": ["rooftop"]}, format="json"
        )
        assert r.status_code == 200 and r.json() == {"updated": 3}
        r = operator_client.post(
            "/api/v1/devices/bulk/group/", {"device_ids": ids, "add": [group.pk]}, format="json"
        )
        assert r.status_code == 200
        r = operator_client.post(
            "/api/v1/devices/bulk/move/", {"device_ids": ids, "site": site.pk}, format="json"
        )
        assert r.status_code == 200
        for device in Device.objects.filter(device_id__in=ids):
            assert [t.name for t in device.tags.all()] == ["rooftop"]
            assert list(device.groups.all()) == [group]
            assert device.site == site
        assert AuditEntry.objects.filter(action="device.bulk_move").count() == 3
        r = operator_client.post(
            "/api/v1/devices/bulk/tag/", {"device_ids": ids, "remove": ["rooftop"]}, format="json"
        )
        assert r.status_code == 200
        assert not Device.objects.filter(device_id__in=ids, tags__name="rooftop").exists()

    def test_bulk_with_unknown_device_changes_nothing(self, operator_client):
        device = DeviceFactory()
        r = operator_client.post(
            "/api/v1/devices/bulk/tag/",
            {"device_ids": [device.device_id, "cam-missing"], "add": ["x1"]},
            format="json",
        )
        assert assert_error_body(r, 404, "not_found")["fields"]["device_ids"] == ["cam-missing"]
        assert not device.tags.exists()


@pytest.mark.django_db
class TestSiteRules:
    def test_site_with_devices_cannot_be_deleted(self, operator_client):
        device = DeviceFactory()
        error = assert_error_body(operator_client.delete(f"/api/v1/sites/{device.site_id}/"), 409, "in_use")
        assert "1 device" in error["message"]

    def test_writes_answer_with_the_same_fields_as_reads(self, operator_client):
        created = operator_client.post("/api/v1/sites/", {"name": "Depot"}, format="json")
        assert created.status_code == 201 and created.json()["device_count"] == 0
        DeviceFactory(site_id=created.json()["id"])
        updated = operator_client.patch(
            f"/api/v1/sites/{created.json()['id']}/", {"name": "Depot 2"}, format="json"
        )
        assert updated.json()["device_count"] == 1 and updated.json()["name"] == "Depot 2"

    def test_bad_timezone_and_coordinates_are_field_errors(self, operator_client):
        r = operator_client.post(
            "/api/v1/sites/", {"name": "X", "timezone": "Mars/Olympus", "latitude": 91}, format="json"
        )
        fields = assert_error_body(r, 400, "validation_error")["fields"]
        assert "timezone" in fields and "latitude" in fields


@pytest.mark.django_db
class TestSavedFilters:
    def test_resolves_dynamically(self, operator_client):
        site = SiteFactory()
        hw = HardwareModelFactory()
        DeviceFactory(site=site, hardware_model=hw, tags=[TagFactory(name="door")])
        r = operator_client.post(
            "/api/v1/saved-filters/",
            {"name": "doors", "criteria": {"site": [site.pk], "tag": ["door"], "hardware_model": [hw.pk]}},
            format="json",
        )
        assert r.status_code == 201, r.content
        url = f"/api/v1/saved-filters/{r.json()['id']}/devices/"
        assert len(operator_client.get(url).json()["results"]) == 1
        DeviceFactory(site=site, hardware_model=hw, tags=[TagFactory._meta.model.objects.get(name="door")])
        assert len(operator_client.get(url).json()["results"]) == 2

    def test_invalid_criteria_are_refused(self, operator_client):
        r = operator_client.post(
            "/api/v1/saved-filters/", {"name": "bad", "criteria": {"colour": ["red"]}}, format="json"
        )
        assert "criteria" in assert_error_body(r, 400, "validation_error")["fields"]
        r = operator_client.post(
            "/api/v1/saved-filters/", {"name": "bad2", "criteria": {"state": ["flying"]}}, format="json"
        )
        assert_error_body(r, 400, "validation_error")


@pytest.mark.django_db
def test_filtered_list_has_no_duplicates_without_distinct(operator_client):
    site = SiteFactory()
    a, b = TagFactory(name="north"), TagFactory(name="gate")
    g1, g2 = DeviceGroupFactory(), DeviceGroupFactory()
    device = DeviceFactory(site=site, tags=[a, b], groups=[g1, g2])
    rows = operator_client.get(
        "/api/v1/devices/", {"site": site.pk, "tag": ["north", "gate"], "group": [g1.pk, g2.pk]}
    ).json()["results"]
    assert [r["device_id"] for r in rows] == [device.device_id]
