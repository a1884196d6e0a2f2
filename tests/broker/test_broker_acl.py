"""fleet.broker.acl: the identity and topic rules the embedded broker enforces (Mosquitto's ACL mirrors them)."""

import pytest

from fleet.broker.acl import Identity, Role, identity_for, may_publish, may_receive, may_subscribe

CAM = Identity("cam-1", Role.DEVICE)
INGEST = Identity("fleet-ingest", Role.INGEST)
ADMIN = Identity("fleet-admin", Role.ADMIN)


@pytest.mark.parametrize(
    ("cn", "client_id", "expected"),
    [
        ("cam-1", "cam-1", CAM),
        ("cam-1", "cam-2", None),  # a device is its client id
        ("cam-1", "", None),
        ("fleet-ingest", "fleet-ingest", INGEST),
        ("fleet-ingest", "fleet-ingest-3", INGEST),  # replicas
        ("fleet-ingest", "cam-1", None),  # no server identity under a device's client id
        ("fleet-ingest", "fleet-ingestX", None),
        ("fleet-admin", "fleet-admin-revoker-1", ADMIN),
        ("fleet-other", "fleet-other", None),  # reserved prefix, not a known server identity
        ("a/b", "a/b", None),
        ("#", "#", None),
    ],
)
def test_identity_for(cn, client_id, expected):
    assert identity_for(cn, client_id) == expected


@pytest.mark.parametrize(
    ("identity", "topic", "expected"),
    [
        (CAM, "fleet/v1/devices/cam-1/up/telemetry", True),
        (CAM, "fleet/v1/devices/cam-1/up", True),
        (CAM, "fleet/v1/devices/cam-2/up/telemetry", False),
        (CAM, "fleet/v1/devices/cam-1/down/cmd", False),
        (CAM, "fleet/v1/devices/cam-1/upx", False),
        (CAM, "fleet/v1/devices/+/up/x", False),
        (CAM, "$SYS/x", False),
        (INGEST, "fleet/v1/devices/cam-1/down/cmd", True),
        (INGEST, "fleet/v1/devices", False),
        (INGEST, "other/topic", False),
        (ADMIN, "fleet/v1/devices/cam-1/down/cmd", False),
    ],
)
def test_may_publish(identity, topic, expected):
    assert may_publish(identity, topic) is expected


@pytest.mark.parametrize(
    ("identity", "topic_filter", "expected"),
    [
        (CAM, "fleet/v1/devices/cam-1/down/#", True),
        (CAM, "fleet/v1/devices/cam-1/down/+", True),
        (CAM, "fleet/v1/devices/cam-1/down", True),
        (CAM, "fleet/v1/devices/cam-1/#", False),  # would cover up/ too
        (CAM, "fleet/v1/devices/+/down/#", False),
        (CAM, "fleet/v1/devices/cam-2/down/#", False),
        (CAM, "#", False),
        (INGEST, "fleet/v1/devices/#", True),
        (INGEST, "fleet/v1/devices/+/up/#", True),
        (INGEST, "fleet/#", False),
        (INGEST, "#", False),
        (ADMIN, "fleet/v1/devices/#", False),
    ],
)
def test_may_subscribe(identity, topic_filter, expected):
    assert may_subscribe(identity, topic_filter) is expected


@pytest.mark.parametrize(
    ("identity", "topic", "expected"),
    [
        (CAM, "fleet/v1/devices/cam-1/down/cmd", True),
        (CAM, "fleet/v1/devices/cam-2/down/cmd", False),
        (CAM, "fleet/v1/devices/cam-1/up/status", False),
        (INGEST, "fleet/v1/devices/cam-1/up/status", True),
        (ADMIN, "fleet/v1/devices/cam-1/up/status", False),
    ],
)
def test_may_receive(identity, topic, expected):
    assert may_receive(identity, topic) is expected
