"""Bandwidth policy precedence and the retained down/config each change publishes."""

import datetime as dt

import pytest

from fleet.audit import Actor
from protocol.down import Config
from telemetry.models.policies import BandwidthPolicy, DeviceConfigState
from telemetry.policies import services
from telemetry.policies.resolve import policy_for
from tests.factories import DeviceFactory, DeviceGroupFactory
from tests.telemetry.test_events_support import record_publishes

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("test")


@pytest.fixture
def published(monkeypatch):
    return record_publishes(monkeypatch)


def test_precedence_device_over_group_over_default():
    low, high = DeviceGroupFactory(), DeviceGroupFactory()
    device = DeviceFactory(groups=[low, high])
    bare = DeviceFactory()
    assert policy_for(device) is None
    default = BandwidthPolicy.objects.create(name="default", max_kbps=64)
    assert policy_for(bare) == default
    BandwidthPolicy.objects.create(name="low", max_kbps=128, group=low, priority=1)
    on_high = BandwidthPolicy.objects.create(name="high", max_kbps=256, group=high, priority=5)
    assert policy_for(device) == on_high
    own = BandwidthPolicy.objects.create(name="own", max_kbps=512, device=device)
    assert policy_for(device) == own
    assert policy_for(bare) == default


def test_equal_group_priorities_go_to_the_oldest_policy():
    a, b = DeviceGroupFactory(), DeviceGroupFactory()
    device = DeviceFactory(groups=[b, a])
    first = BandwidthPolicy.objects.create(name="first", max_kbps=1, group=b)
    BandwidthPolicy.objects.create(name="second", max_kbps=2, group=a)
    assert policy_for(device) == first


def test_policy_change_publishes_retained_config_to_every_affected_device(
    published, django_capture_on_commit_callbacks
):
    group = DeviceGroupFactory()
    members = [DeviceFactory(groups=[group]) for _ in range(3)]
    outsider = DeviceFactory()
    with django_capture_on_commit_callbacks(execute=True):
        policy = services.policy_create(
            actor=ACTOR,
            data={
                "name": "trucks",
                "group": group,
                "max_kbps": 256,
                "daily_budget_mb": 200,
                "classes_allowed": ["alert", "event", "thumbnail", "telemetry"],
                "quiet_start": dt.time(22, 0),
                "quiet_end": dt.time(6, 0),
                "metered": True,
                "detection": {"min_score": 0.6, "labels": ["person"]},
            },
        )
    for device in members:
        (config,) = published.to(device.device_id, "config")
        assert isinstance(config, Config) and config.revision == 1
        assert config.config.bandwidth.max_kbps == 256
        assert config.config.bandwidth.quiet_hours == ("22:00", "06:00")
        assert config.config.bandwidth.metered is True
        assert config.config.detection.labels == ["person"]
        assert published.flags(device.device_id, "config") == {(1, True)}  # QoS 1, retained
    assert published.to(outsider.device_id, "config") == []

    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.policy_update(actor=ACTOR, instance=policy, data={"max_kbps": 128})
    assert [published.to(d.device_id, "config")[0].revision for d in members] == [2, 2, 2]
    # A change that does not alter the resolved config publishes nothing.
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.policy_update(actor=ACTOR, instance=policy, data={"priority": 3})
    assert published == []
    # Deleting it sends the devices back to protocol defaults.
    with django_capture_on_commit_callbacks(execute=True):
        services.policy_delete(actor=ACTOR, instance=policy)
    config = published.to(members[0].device_id, "config")[-1]
    assert config.revision == 3 and config.config.bandwidth.max_kbps == 512
    assert DeviceConfigState.objects.get(device=members[0]).revision == 3


def test_a_rolled_back_change_publishes_nothing(published, django_capture_on_commit_callbacks):
    from django.db import transaction

    device = DeviceFactory()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        services.policy_create(actor=ACTOR, data={"name": "d", "device": device, "max_kbps": 10})
        raise RuntimeError("rollback")
    assert published == []


def test_invalid_detection_settings_are_a_field_error():
    from fleet.errors import FleetError

    with pytest.raises(FleetError) as err:
        services.policy_create(
            actor=ACTOR, data={"name": "bad", "max_kbps": 10, "detection": {"min_score": 7}}
        )
    assert "detection" in err.value.fields


def test_fleet_wide_change_is_batched(
    published, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    devices = [DeviceFactory() for _ in range(30)]
    with django_capture_on_commit_callbacks(execute=True), django_assert_max_num_queries(25):
        services.policy_create(actor=ACTOR, data={"name": "default", "max_kbps": 300})
    assert all(published.to(d.device_id, "config")[0].config.bandwidth.max_kbps == 300 for d in devices)


def test_moving_devices_between_groups_republishes_their_config(
    published, django_capture_on_commit_callbacks
):
    from devices.services import devices_bulk_group

    trucks = DeviceGroupFactory()
    BandwidthPolicy.objects.create(name="trucks", max_kbps=96, group=trucks)
    device = DeviceFactory()
    with django_capture_on_commit_callbacks(execute=True):
        devices_bulk_group(actor=ACTOR, device_ids=[device.device_id], add=[trucks], remove=[])
    (config,) = published.to(device.device_id, "config")
    assert config.config.bandwidth.max_kbps == 96
