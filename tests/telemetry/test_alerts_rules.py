"""Alert rules: matching (label, score, scope, quiet hours in the site's zone) and signed webhooks."""

import datetime as dt
import json
import threading
import zoneinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from protocol.up import Events
from telemetry.events import webhooks
from telemetry.events.alerts import in_quiet_hours
from telemetry.events.handlers import handle_events
from telemetry.models.events import Alert, AlertRule, WebhookState
from tests.factories import DeviceFactory, DeviceGroupFactory, SiteFactory
from tests.telemetry.test_events_support import detection, inbound

pytestmark = pytest.mark.django_db(transaction=False)
SECRET = "s3cr3t-webhook-key"


def ingest(device, *detections, capture):
    with capture(execute=True):
        handle_events(items=[inbound(device, "events", Events, events=list(detections))])


def at_local(hour: int, minute: int, tz: str) -> float:
    today = dt.datetime.now(zoneinfo.ZoneInfo(tz)).date()
    local = dt.datetime.combine(today, dt.time(hour, minute), tzinfo=zoneinfo.ZoneInfo(tz))
    return local.timestamp()


@pytest.mark.parametrize(
    ("t", "start", "end", "quiet"),
    [
        ("23:00", "22:00", "06:00", True),
        ("05:59", "22:00", "06:00", True),
        ("06:00", "22:00", "06:00", False),
        ("12:00", "09:00", "17:00", True),
        ("17:00", "09:00", "17:00", False),
        ("08:59", "09:00", "17:00", False),
    ],
)
def test_quiet_hours_wrap_midnight(t, start, end, quiet):
    parse = dt.time.fromisoformat
    assert in_quiet_hours(parse(t), parse(start), parse(end)) is quiet


def test_label_score_and_scope(django_capture_on_commit_callbacks):
    berlin, tokyo = SiteFactory(timezone="Europe/Berlin"), SiteFactory(timezone="Asia/Tokyo")
    trucks = DeviceGroupFactory()
    in_site, in_group, outside = (
        DeviceFactory(site=berlin),
        DeviceFactory(site=tokyo, groups=[trucks]),
        DeviceFactory(site=tokyo),
    )
    rule = AlertRule.objects.create(name="people", labels=["person"], min_score=0.8)
    rule.sites.set([berlin])
    rule.groups.set([trucks])
    AlertRule.objects.create(name="disabled", enabled=False)
    ingest(
        in_site,
        detection("a", score=0.85),
        detection("b", score=0.5),
        detection("c", label="car"),
        capture=django_capture_on_commit_callbacks,
    )
    ingest(in_group, detection("d"), capture=django_capture_on_commit_callbacks)
    ingest(outside, detection("e"), capture=django_capture_on_commit_callbacks)
    assert sorted(Alert.objects.values_list("event__event_id", flat=True)) == ["a", "d"]
    # Any label, any device:
    AlertRule.objects.create(name="anything", min_score=0)
    ingest(outside, detection("f", label="dog", score=0.1), capture=django_capture_on_commit_callbacks)
    assert Alert.objects.filter(event__event_id="f", rule__name="anything").exists()


def test_quiet_hours_use_the_sites_time_zone(django_capture_on_commit_callbacks):
    tokyo = SiteFactory(timezone="Asia/Tokyo")
    device = DeviceFactory(site=tokyo)
    AlertRule.objects.create(
        name="nights off", quiet_start=dt.time(0, 0), quiet_end=dt.time(6, 0), min_score=0
    )
    # 03:00 in Tokyo is 18:00 UTC the day before: quiet in Tokyo, though not in UTC.
    quiet = at_local(3, 0, "Asia/Tokyo") - 86400
    loud = at_local(12, 0, "Asia/Tokyo") - 86400
    ingest(
        device,
        detection("night", start=quiet),
        detection("noon", start=loud),
        capture=django_capture_on_commit_callbacks,
    )
    assert list(Alert.objects.values_list("event__event_id", flat=True)) == ["noon"]


def test_an_event_resent_with_its_end_raises_no_second_alert(django_capture_on_commit_callbacks):
    device = DeviceFactory()
    AlertRule.objects.create(name="all", min_score=0)
    d = detection("ev-1")
    ingest(device, d, capture=django_capture_on_commit_callbacks)
    ingest(device, {**d, "end": d["start"] + 1}, capture=django_capture_on_commit_callbacks)
    assert Alert.objects.count() == 1


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that answers the first `fail` requests with 500."""

    def __init__(self, fail: int = 0) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(500 if len(receiver.requests) <= receiver.fail else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def no_backoff(monkeypatch):
    from telemetry.events import tasks

    monkeypatch.setattr(tasks, "backoff_s", lambda retries: 0)


def test_webhook_is_signed_and_verifiable(django_capture_on_commit_callbacks, no_backoff):
    device = DeviceFactory()
    with Receiver() as receiver:
        AlertRule.objects.create(name="hook", min_score=0, webhook_url=receiver.url, webhook_secret=SECRET)
        ingest(device, detection("ev-hook"), capture=django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    signature, timestamp = headers[webhooks.SIGNATURE_HEADER], headers[webhooks.TIMESTAMP_HEADER]
    assert signature.startswith("sha256=")
    assert webhooks.verify(SECRET, body, signature, timestamp)
    assert not webhooks.verify("wrong-secret", body, signature, timestamp)
    assert not webhooks.verify(SECRET, body + b" ", signature, timestamp)
    # A replay an hour later is refused even with the right signature.
    assert not webhooks.verify(SECRET, body, signature, timestamp, now=int(timestamp) + 3600)
    payload = json.loads(body)
    assert payload["event"]["event_id"] == "ev-hook"
    assert payload["device"]["device_id"] == device.device_id
    alert = Alert.objects.get()
    assert (alert.webhook_state, alert.webhook_attempts) == (WebhookState.DELIVERED, 1)


def test_webhook_retries_on_500_then_delivers(django_capture_on_commit_callbacks, no_backoff):
    device = DeviceFactory()
    with Receiver(fail=2) as receiver:
        AlertRule.objects.create(name="flaky", min_score=0, webhook_url=receiver.url, webhook_secret=SECRET)
        ingest(device, detection("ev-flaky"), capture=django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 3
    alert = Alert.objects.get()
    assert (alert.webhook_state, alert.webhook_attempts) == (WebhookState.DELIVERED, 3)


def test_webhook_gives_up_after_the_last_attempt(django_capture_on_commit_callbacks, no_backoff):
    from telemetry.events.tasks import MAX_ATTEMPTS

    device = DeviceFactory()
    with Receiver(fail=100) as receiver:
        AlertRule.objects.create(name="down", min_score=0, webhook_url=receiver.url, webhook_secret=SECRET)
        ingest(device, detection("ev-down"), capture=django_capture_on_commit_callbacks)
    assert len(receiver.requests) == MAX_ATTEMPTS
    alert = Alert.objects.get()
    assert (alert.webhook_state, alert.webhook_error) == (WebhookState.FAILED, "HTTP 500")


def test_backoff_grows_exponentially_and_is_capped():
    from telemetry.events.tasks import BACKOFF_MAX_S, backoff_s

    assert all(0 <= backoff_s(0) <= 5 for _ in range(50))
    assert max(backoff_s(3) for _ in range(200)) > 20
    assert all(backoff_s(30) <= BACKOFF_MAX_S for _ in range(50))
