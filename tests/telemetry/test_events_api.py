"""REST API of events, alerts, alert rules, bandwidth policies, commands, media and data usage."""

import datetime as dt

import pytest

from accounts.models import Role
from fleet.models import AuditEntry
from telemetry.models.commands import Command
from telemetry.models.events import Alert, AlertRule, Event
from telemetry.models.policies import BandwidthPolicy, DataUsage
from tests.api_base import CrudApiContract, assert_error_body
from tests.factories import DeviceFactory, DeviceGroupFactory, SiteFactory
from tests.telemetry.test_events_support import record_publishes

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    return record_publishes(monkeypatch)


def make_event(device=None, event_id=None, **fields):
    device = device or DeviceFactory()
    fields.setdefault("start", dt.datetime.now(dt.UTC))
    return Event.objects.create(
        device=device,
        event_id=event_id or f"ev-{Event.objects.count()}-{AuditEntry.objects.count()}",
        camera="gate",
        label=fields.pop("label", "person"),
        score=fields.pop("score", 0.9),
        bbox=[0.1, 0.1, 0.2, 0.2],
        **fields,
    )


class AlertRuleFactory:
    class _meta:
        model = AlertRule

    def __new__(cls, **kwargs):
        kwargs.setdefault("name", f"rule-{AlertRule.objects.count()}-{AuditEntry.objects.count()}")
        return AlertRule.objects.create(**kwargs)


class TestAlertRuleApi(CrudApiContract):
    url = "/api/v1/alert-rules/"
    factory = AlertRuleFactory

    def create_payload(self):
        return {
            "name": f"people-{AuditEntry.objects.count()}",
            "labels": ["person"],
            "min_score": 0.7,
            "quiet_start": "22:00",
            "quiet_end": "06:00",
            "webhook_url": "https://hooks.example.com/fleet",
            "webhook_secret": "topsecret",
        }

    def update_payload(self):
        return {"min_score": 0.8}

    def test_secret_is_write_only_and_required_for_a_webhook(self, operator_client):
        body = operator_client.post(self.url, self.create_payload(), format="json").json()
        assert "webhook_secret" not in body and body["has_webhook_secret"] is True
        payload = {**self.create_payload(), "name": "no-secret", "webhook_secret": ""}
        error = assert_error_body(
            operator_client.post(self.url, payload, format="json"), 400, "validation_error"
        )
        assert "webhook_secret" in error["fields"]


class BandwidthPolicyFactory:
    class _meta:
        model = BandwidthPolicy

    def __new__(cls, **kwargs):
        kwargs.setdefault("name", f"policy-{BandwidthPolicy.objects.count()}-{AuditEntry.objects.count()}")
        kwargs.setdefault("group", DeviceGroupFactory())
        return BandwidthPolicy.objects.create(max_kbps=128, **kwargs)


class TestBandwidthPolicyApi(CrudApiContract):
    url = "/api/v1/bandwidth-policies/"
    factory = BandwidthPolicyFactory

    @pytest.fixture(autouse=True)
    def _no_broker(self, monkeypatch):
        record_publishes(monkeypatch)

    def create_payload(self):
        return {
            "name": f"cellular-{AuditEntry.objects.count()}",
            "group": DeviceGroupFactory().pk,
            "max_kbps": 256,
            "daily_budget_mb": 200,
            "classes_allowed": ["alert", "event"],
            "metered": True,
        }

    def update_payload(self):
        return {"max_kbps": 64}

    def test_bad_class_and_second_default_are_refused(self, operator_client):
        payload = {**self.create_payload(), "classes_allowed": ["alert", "video"]}
        error = assert_error_body(
            operator_client.post(self.url, payload, format="json"), 400, "validation_error"
        )
        assert "classes_allowed" in error["fields"]
        default = {"name": "default-1", "max_kbps": 100}
        assert operator_client.post(self.url, default, format="json").status_code == 201
        assert_error_body(
            operator_client.post(self.url, {**default, "name": "default-2"}, format="json"), 400
        )

    def test_device_configs_show_the_published_revision(self, operator_client):
        device = DeviceFactory()
        payload = {"name": "mine", "device": device.device_id, "max_kbps": 99}
        assert operator_client.post(self.url, payload, format="json").status_code == 201
        body = operator_client.get(f"/api/v1/device-configs/{device.device_id}/").json()
        assert body["revision"] == 1 and body["config"]["bandwidth"]["max_kbps"] == 99


def test_event_list_filters(operator_client):
    site, other_site = SiteFactory(), SiteFactory()
    a, b = DeviceFactory(site=site), DeviceFactory(site=other_site)
    now = dt.datetime.now(dt.UTC)
    hit = make_event(a, "ev-hit", score=0.95, start=now)
    make_event(a, "ev-low", score=0.3, start=now)
    make_event(a, "ev-car", label="car", start=now)
    make_event(a, "ev-old", start=now - dt.timedelta(days=2))
    make_event(b, "ev-other-site", start=now)
    params = {
        "site": site.pk,
        "label": "person",
        "min_score": 0.5,
        "after": (now - dt.timedelta(hours=1)).isoformat(),
    }
    rows = operator_client.get("/api/v1/events/", params).json()["results"]
    assert [r["event_id"] for r in rows] == [hit.event_id]
    rows = operator_client.get("/api/v1/events/", {"device": b.device_id}).json()["results"]
    assert [r["event_id"] for r in rows] == ["ev-other-site"]
    detail = operator_client.get(f"/api/v1/events/{hit.pk}/").json()
    assert detail["device"] == a.device_id and detail["media"] == []
    assert_error_body(operator_client.get("/api/v1/events/", {"min_score": "high"}), 400)
    # Ids beyond 64 bits are a field error, never a driver overflow (found by schemathesis on SQLite).
    for url, name in (("/api/v1/events/", "group"), ("/api/v1/alerts/", "rule")):
        error = assert_error_body(operator_client.get(url, {name: "-13957018397794877440"}), 400)
        assert name in error["fields"]
        # A "%" in the value once broke the error message's formatting into a 500 (schemathesis).
        error = assert_error_body(operator_client.get(url, {name: "['T%', 'x']"}), 400)
        assert "is not an id" in str(error["fields"][name])


def test_events_are_read_only_and_paginated(api_client_for):
    viewer = api_client_for(Role.VIEWER)
    for _ in range(5):
        make_event()
    first = viewer.get("/api/v1/events/", {"page_size": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    assert viewer.post("/api/v1/events/", {}, format="json").status_code == 403
    assert (
        api_client_for(Role.ADMIN).delete(f"/api/v1/events/{first['results'][0]['id']}/").status_code == 405
    )


def test_alert_acknowledge(api_client_for):
    rule = AlertRule.objects.create(name="r")
    event = make_event()
    alert = Alert.objects.create(rule=rule, event=event, device=event.device)
    url = f"/api/v1/alerts/{alert.pk}/acknowledge/"
    assert_error_body(api_client_for(Role.VIEWER).post(url), 403)
    operator = api_client_for(Role.OPERATOR)
    rows = operator.get("/api/v1/alerts/", {"acknowledged": "false"}).json()["results"]
    assert [r["id"] for r in rows] == [alert.pk]
    body = operator.post(url).json()
    assert body["acknowledged_by"] == operator.user.username and body["event"]["event_id"] == event.event_id
    assert_error_body(operator.post(url), 409, "already_acknowledged")
    assert operator.get("/api/v1/alerts/", {"acknowledged": "false"}).json()["results"] == []
    assert AuditEntry.objects.filter(action="alert.acknowledge", object_id=str(alert.pk)).exists()


def test_send_command_through_the_api(api_client_for, published, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    payload = {"device": device.device_id, "name": "request_logs", "args": {"lines": 500}}
    assert_error_body(api_client_for(Role.VIEWER).post("/api/v1/commands/", payload, format="json"), 403)
    operator = api_client_for(Role.OPERATOR)
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post("/api/v1/commands/", payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] == "sent" and body["created_by"] == operator.user.username
    assert published.to(device.device_id, "cmd")[0].command_id == body["command_id"]
    assert operator.get(f"/api/v1/commands/{body['id']}/").json()["name"] == "request_logs"
    bad = {**payload, "args": {"lines": 0}}
    assert_error_body(operator.post("/api/v1/commands/", bad, format="json"), 400, "validation_error")
    assert_error_body(
        operator.post("/api/v1/commands/", {**payload, "name": "selfdestruct"}, format="json"), 400
    )
    assert Command.objects.count() == 1


def test_data_usage_summary(operator_client):
    device = DeviceFactory()
    DataUsage.objects.create(device=device, day=dt.date.today(), uplink_class="clip", bytes=1000)
    body = operator_client.get("/api/v1/data-usage/summary/", {"device": device.device_id, "days": 2}).json()
    assert len(body["days"]) == 2
    assert sum(d["bytes"] for d in body["days"]) == 1000
    assert_error_body(operator_client.get("/api/v1/data-usage/summary/", {"device": "cam-nope"}), 404)
    assert (
        operator_client.get("/api/v1/data-usage/", {"uplink_class": "clip"}).json()["results"][0]["bytes"]
        == 1000
    )
