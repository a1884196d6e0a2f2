"""Publishing to one device's down/{kind} after commit: topic, QoS and retain come from the protocol."""

from __future__ import annotations

from fleet import mqtt
from protocol import topics
from protocol._base import Message
from protocol.messages import encode, kind_of


def send_on_commit(device_id: str, msg: Message) -> None:
    """Publish `msg` to the device once the current transaction commits (never on rollback)."""
    direction, kind = kind_of(msg)
    if direction != "down":
        raise ValueError(f"{type(msg).__name__} is not a down message")
    delivery = topics.delivery("down", kind)
    mqtt.publish_on_commit(
        topics.down(device_id, kind), encode(msg), qos=delivery.qos, retain=delivery.retain
    )
