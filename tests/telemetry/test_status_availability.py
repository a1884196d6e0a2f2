"""Device availability: birth / will, liveness from any message, the silence sweep, fleet aggregates, API."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import DeviceState
from telemetry.ingest.services import ingest_batch
from telemetry.models import DeviceStatus
from telemetry.status.selectors import fleet_status_summary
from telemetry.status.services import status_sweep
from tests.api_base import assert_error_body
from tests.factories import DeviceFactory, SiteFactory
from tests.telemetry.helpers import raw, status_payload, telemetry_payload

pytestmark = pytest.mark.django_db


def test_birth_marks_online_and_records_versions_will_marks_offline():
    device = DeviceFactory(agent_version="", model_version="")
    ingest_batch(
        messages=[
            raw(
                device.device_id,
                "status",
                status_payload(
                    "online", agent_version="1.5.0", model_version="person@2", hardware_model="cam-x1"
                ),
            )
        ]
    )
    status = DeviceStatus.objects.get(device=device)
    device.refresh_from_db()
    assert (status.online, status.reason, status.hardware_model) == (True, "birth", "cam-x1")
    assert (device.agent_version, device.model_version) == ("1.5.0", "person@2")
    born = status.since

    ingest_batch(messages=[raw(device.device_id, "status", status_payload("online", uptime_s=5))])
    status.refresh_from_db()
    assert status.since == born  # still online: since does not move

    will = status_payload("offline", reason="connection_lost", agent_version="1.5.0")
    ingest_batch(messages=[raw(device.device_id, "status", will)])
    status.refresh_from_db()
    device.refresh_from_db()
    assert (status.online, status.reason) == (False, "connection_lost")
    assert status.since > born
    assert device.model_version == "person@2"  # a will without model_version leaves it as it was


def test_last_status_in_a_batch_wins():
    device = DeviceFactory()
    ingest_batch(
        messages=[
            raw(device.device_id, "status", status_payload("online")),
            raw(device.device_id, "status", status_payload("offline", reason="shutdown")),
        ]
    )
    assert DeviceStatus.objects.get(device=device).reason == "shutdown"


def test_only_a_device_coming_back_gets_its_update_offers_again(monkeypatch):
    """Births re-send unfinished OTA offers; a repeated online status (a model change) does not."""
    from telemetry.status import services

    called = []
    monkeypatch.setattr(services, "device_came_online", lambda device: called.append(device.device_id))
    device = DeviceFactory()

    def send(*states: str) -> list[str]:
        called.clear()
        ingest_batch(messages=[raw(device.device_id, "status", status_payload(s)) for s in states])
        return list(called)

    ingest_batch(messages=[raw(device.device_id, "telemetry", telemetry_payload())])  # alive, no birth
    assert send("online") == [device.device_id]  # first birth
    assert send("online") == []  # still online: e.g. the model version changed
    assert send("offline") == []
    assert send("online") == [device.device_id]  # back after its will
    assert send("offline", "online") == [device.device_id]  # will and rebirth in one batch


def test_sweep_marks_silent_devices_offline_and_traffic_brings_them_back():
    quiet, chatty = DeviceFactory(), DeviceFactory()
    for device in (quiet, chatty):
        ingest_batch(messages=[raw(device.device_id, "status", status_payload("online"))])
    later = timezone.now() + dt.timedelta(seconds=301)
    ingest_batch(messages=[raw(chatty.device_id, "telemetry", telemetry_payload(), received_at=later)])

    assert status_sweep(now=later + dt.timedelta(seconds=1), silent_after_s=300) == 1
    assert DeviceStatus.objects.get(device=quiet).reason == "silent"
    assert DeviceStatus.objects.get(device=chatty).online is True

    ingest_batch(messages=[raw(quiet.device_id, "telemetry", telemetry_payload(), received_at=later)])
    status = DeviceStatus.objects.get(device=quiet)
    assert (status.online, status.reason) == (True, "resumed")


def test_device_sending_without_birth_on_record_counts_online():
    device = DeviceFactory()
    ingest_batch(messages=[raw(device.device_id, "telemetry", telemetry_payload())])
    assert DeviceStatus.objects.get(device=device).reason == "seen"
    assert fleet_status_summary()["online"] == 1


def _fleet(n: int, site) -> None:
    for i in range(n):
        device = DeviceFactory(site=site, agent_version=f"1.{i % 3}.0", model_version="m@1")
        if i % 2:
            ingest_batch(
                messages=[
                    raw(
                        device.device_id,
                        "status",
                        status_payload("online", agent_version=device.agent_version),
                    )
                ]
            )


def test_fleet_summary_counts_by_connectivity_version_and_site():
    site_a, site_b = SiteFactory(name="A"), SiteFactory(name="B")
    _fleet(4, site_a)
    _fleet(3, site_b)
    gone = DeviceFactory(site=site_a, state=DeviceState.DECOMMISSIONED)
    ingest_batch(messages=[raw(gone.device_id, "status", status_payload("online"))])
    offline = DeviceFactory(site=site_b)
    ingest_batch(messages=[raw(offline.device_id, "status", status_payload("offline", reason="shutdown"))])

    summary = fleet_status_summary()
    assert (summary["online"], summary["offline"], summary["never_seen"], summary["total"]) == (3, 1, 4, 8)
    sites = {s["site_name"]: s for s in summary["by_site"]}
    assert (sites["A"]["online"], sites["A"]["never_seen"], sites["A"]["total"]) == (2, 2, 4)
    assert (sites["B"]["online"], sites["B"]["offline"], sites["B"]["total"]) == (1, 1, 4)
    agents = {a["agent_version"]: a["total"] for a in summary["by_agent_version"]}
    assert sum(agents.values()) == 8
    assert {m["model_version"] for m in summary["by_model_version"]} >= {"m@1"}


def test_fleet_summary_query_count_is_constant_as_the_fleet_grows():
    site = SiteFactory()
    _fleet(3, site)
    with CaptureQueriesContext(connection) as small:
        fleet_status_summary()
    _fleet(30, SiteFactory())
    with CaptureQueriesContext(connection) as large:
        fleet_status_summary()
    assert len(small) == len(large) == 2


def test_status_api(api_client_for):
    device = DeviceFactory()
    never = DeviceFactory()
    ingest_batch(messages=[raw(device.device_id, "status", status_payload("online", agent_version="2.0.0"))])
    client = api_client_for("viewer")

    body = client.get(f"/api/v1/devices/{device.device_id}/status/").json()
    assert (body["connectivity"], body["online"], body["reason"], body["agent_version"]) == (
        "online",
        True,
        "birth",
        "2.0.0",
    )
    assert client.get(f"/api/v1/devices/{never.device_id}/status/").json()["connectivity"] == "never_seen"
    summary = client.get("/api/v1/fleet/status/").json()
    assert (summary["online"], summary["never_seen"]) == (1, 1)
    assert body["faults"] == []
    fault = "camera: source_unreadable: rtsp://cam: cannot open within 5 s"
    ingest_batch(messages=[raw(device.device_id, "status", status_payload("online", faults=[fault]))])
    assert client.get(f"/api/v1/devices/{device.device_id}/status/").json()["faults"] == [fault]
    assert_error_body(client.get("/api/v1/devices/cam-nope/status/"), 404)
    assert_error_body(APIClient().get("/api/v1/fleet/status/"), 401)


def test_dead_letter_api_is_for_operators(api_client_for):
    ingest_batch(messages=[raw("cam-unknown", "telemetry", b"{oops")])
    assert api_client_for("viewer").get("/api/v1/dead-letters/").status_code == 403
    rows = api_client_for("operator").get("/api/v1/dead-letters/?reason=bad_json").json()["results"]
    assert [(r["reason"], r["payload_head"]) for r in rows] == [("bad_json", "{oops")]
