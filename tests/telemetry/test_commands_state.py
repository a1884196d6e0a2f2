"""Commands: down/cmd after commit, the ack state machine, expiry, refused acks dead-lettered."""

import datetime as dt

import msgspec
import pytest
from django.utils import timezone

from devices.models import DeviceState
from fleet.audit import Actor
from fleet.errors import FleetError
from protocol.down import Command as CommandMessage
from protocol.up import Ack, Detection
from telemetry.commands import services
from telemetry.commands.handlers import handle_acks
from telemetry.models.commands import Command, CommandState
from telemetry.models.ingest import DeadLetter
from tests.factories import DeviceFactory
from tests.telemetry.test_events_support import inbound, record_publishes

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("test")


@pytest.fixture
def published(monkeypatch):
    return record_publishes(monkeypatch)


def ack(device, command_id, status, **fields):
    return inbound(device, "ack", Ack, command_id=command_id, status=status, **fields)


def send(device, published, capture, name="set_log_level", args=None, **kwargs):
    with capture(execute=True):
        return services.command_send(
            actor=ACTOR, device=device, name=name, args={"level": "debug"} if args is None else args, **kwargs
        )


def test_send_publishes_down_cmd_after_commit(published, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    command = send(device, published, django_capture_on_commit_callbacks)
    (msg,) = published.to(device.device_id, "cmd")
    assert isinstance(msg, CommandMessage)
    assert (msg.command_id, msg.id, msg.name, msg.args) == (
        command.command_id,
        command.command_id,
        "set_log_level",
        {"level": "debug"},
    )
    assert msg.expires == pytest.approx(command.expires_at.timestamp())
    assert published.flags(device.device_id, "cmd") == {(1, False)}  # never retained
    assert command.state == CommandState.SENT


def test_invalid_args_and_inactive_devices_are_refused(published, django_capture_on_commit_callbacks):
    with pytest.raises(FleetError) as err:
        send(DeviceFactory(), published, django_capture_on_commit_callbacks, args={"level": "loud"})
    assert err.value.code == "validation_error"
    with pytest.raises(FleetError) as err:
        send(DeviceFactory(state=DeviceState.DECOMMISSIONED), published, django_capture_on_commit_callbacks)
    assert err.value.status == 409
    assert published == [] and not Command.objects.exists()


def test_ack_state_machine_is_idempotent_and_terminal_states_stick(
    published, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    command = send(device, published, django_capture_on_commit_callbacks)
    handle_acks(items=[ack(device, command.command_id, "acknowledged")])
    command.refresh_from_db()
    assert command.state == CommandState.ACKNOWLEDGED and command.acknowledged_at
    handle_acks(items=[ack(device, command.command_id, "acknowledged")])  # duplicate: no change
    handle_acks(items=[ack(device, command.command_id, "succeeded", result={"log_level": "debug"})])
    command.refresh_from_db()
    assert (command.state, command.result) == (CommandState.SUCCEEDED, {"log_level": "debug"})
    # A late or conflicting ack never reopens a finished command.
    handle_acks(
        items=[ack(device, command.command_id, "acknowledged"), ack(device, command.command_id, "failed")]
    )
    command.refresh_from_db()
    assert command.state == CommandState.SUCCEEDED
    assert not DeadLetter.objects.exists()


def test_a_lost_acknowledged_may_be_skipped(published, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    command = send(device, published, django_capture_on_commit_callbacks, name="reboot", args={})
    handle_acks(items=[ack(device, command.command_id, "failed", detail="busy")])
    command.refresh_from_db()
    assert (command.state, command.detail) == (CommandState.FAILED, "busy")
    assert command.finished_at and command.acknowledged_at


def test_expiry_and_acks_for_unknown_or_expired_commands_are_dead_lettered(
    published, django_capture_on_commit_callbacks
):
    device, other = DeviceFactory(), DeviceFactory()
    command = send(device, published, django_capture_on_commit_callbacks, ttl_s=60)
    assert services.commands_expire() == 0
    assert services.commands_expire(now=timezone.now() + dt.timedelta(seconds=61)) == 1
    command.refresh_from_db()
    assert command.state == CommandState.EXPIRED
    handle_acks(
        items=[
            ack(device, command.command_id, "succeeded"),
            ack(device, "no-such-command", "succeeded"),
            ack(other, command.command_id, "succeeded"),  # another device's command is unknown to it
        ]
    )
    command.refresh_from_db()
    assert command.state == CommandState.EXPIRED
    reasons = sorted(DeadLetter.objects.values_list("device_id", "reason"))
    assert reasons == sorted(
        [
            (device.device_id, "command_expired"),
            (device.device_id, "unknown_command"),
            (other.device_id, "unknown_command"),
        ]
    )


def test_upload_clip_names_an_event_of_that_device(published, django_capture_on_commit_callbacks):
    from telemetry.events.services import events_ingest
    from tests.telemetry.test_events_support import detection as detection_dict

    device, other = DeviceFactory(), DeviceFactory()
    events_ingest(device=device, detections=[msgspec.convert(detection_dict("ev-7"), Detection)])
    command = send(
        device, published, django_capture_on_commit_callbacks, name="upload_clip", args={"event_id": "ev-7"}
    )
    (msg,) = published.to(device.device_id, "cmd")
    assert (msg.name, msg.args, command.name) == ("upload_clip", {"event_id": "ev-7"}, "upload_clip")
    handle_acks(items=[ack(device, command.command_id, "acknowledged")])
    handle_acks(
        items=[
            ack(device, command.command_id, "succeeded", result={"request_id": "rq-9", "event_id": "ev-7"})
        ]
    )
    command.refresh_from_db()
    assert command.state == CommandState.SUCCEEDED and command.result["request_id"] == "rq-9"
    for dev, args in ((other, {"event_id": "ev-7"}), (device, {"event_id": "ev-404"}), (device, {})):
        with pytest.raises(FleetError) as err:
            send(dev, published, django_capture_on_commit_callbacks, name="upload_clip", args=args)
        assert err.value.code == "validation_error" and "event" in str(err.value.fields["args"])
    assert Command.objects.count() == 1
