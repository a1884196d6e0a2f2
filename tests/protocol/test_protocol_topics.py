import pytest

from protocol import topics
from protocol.errors import ProtocolError, TopicError


@pytest.mark.parametrize("kind", topics.UP_KINDS)
def test_up_topic_round_trips(kind):
    topic = topics.up("cam-0001", kind)
    assert topic == f"fleet/v1/devices/cam-0001/up/{kind}"
    assert topics.parse(topic) == topics.Topic(device_id="cam-0001", direction="up", kind=kind)
    assert str(topics.parse(topic)) == topic


@pytest.mark.parametrize("kind", topics.DOWN_KINDS)
def test_down_topic_round_trips(kind):
    topic = topics.down("cam-0001", kind)
    assert topics.parse(topic) == topics.Topic(device_id="cam-0001", direction="down", kind=kind)


@pytest.mark.parametrize(
    "device_id",
    ["", "ab", "Cam-1", "-cam", "cam/1", "cam+", "cam#", "cam 1", "cam_1", "a" * 64, "café1", "%u1"],
)
def test_invalid_device_ids_are_refused(device_id):
    with pytest.raises(TopicError) as exc:
        topics.up(device_id, "status")
    assert exc.value.reason == "topic"


def test_unknown_kinds_are_refused_per_direction():
    with pytest.raises(TopicError):
        topics.up("cam-1", "config")  # config only goes down
    with pytest.raises(TopicError):
        topics.down("cam-1", "telemetry")  # telemetry only goes up


@pytest.mark.parametrize(
    "topic",
    [
        "fleet/v1/devices/cam-1/up",
        "fleet/v1/devices/cam-1/up/status/extra",
        "fleet/v2/devices/cam-1/up/status",
        "fleet/v1/devices/+/up/status",
        "fleet/v1/devices/cam-1/sideways/status",
        "fleet/v1/devices/cam-1/up/#",
        "/fleet/v1/devices/cam-1/up/status",
        "fleet/v1/devices/cam-1/down/telemetry",
        "",
    ],
)
def test_parse_refuses_foreign_topics(topic):
    with pytest.raises(TopicError):
        topics.parse(topic)


def test_topic_error_is_a_protocol_error_with_reason_and_detail():
    with pytest.raises(ProtocolError) as exc:
        topics.parse("nope")
    assert exc.value.reason == "topic"
    assert "nope" in exc.value.detail


def test_ingest_filters():
    assert topics.ingest_filter(shared=False) == "fleet/v1/devices/+/up/#"
    assert topics.ingest_filter(shared=True) == "$share/ingest/fleet/v1/devices/+/up/#"
    assert topics.ingest_filter(shared=True, group="g2") == "$share/g2/fleet/v1/devices/+/up/#"
    with pytest.raises(TopicError):
        topics.ingest_filter(shared=True, group="a/b")


def test_device_subscription_covers_only_its_own_down_topics():
    assert topics.device_subscription("cam-1") == "fleet/v1/devices/cam-1/down/#"
    assert topics.ACL_DEVICE_WRITE == "fleet/v1/devices/%u/up/#"
    assert topics.ACL_DEVICE_READ == "fleet/v1/devices/%u/down/#"


def test_delivery_table_retains_state_topics_only():
    retained = {
        (d, k)
        for d, kinds in (("up", topics.UP_KINDS), ("down", topics.DOWN_KINDS))
        for k in kinds
        if topics.delivery(d, k).retain
    }
    assert retained == {("up", "status"), ("down", "config"), ("down", "ota")}
    assert all(topics.delivery("up", k).qos == 1 for k in topics.UP_KINDS)
    assert all(topics.delivery("down", k).qos == 1 for k in topics.DOWN_KINDS)
    with pytest.raises(TopicError):
        topics.delivery("up", "config")


def test_a_device_may_only_speak_on_its_own_topics():
    topic = topics.parse(topics.up("cam-0001", "events"))
    assert topics.check_sender(topic, "cam-0001") is topic
    with pytest.raises(TopicError) as exc:
        topics.check_sender(topic, "cam-0002")
    assert exc.value.reason == "device_mismatch"
