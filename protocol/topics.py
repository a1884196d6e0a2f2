"""Every MQTT topic string of the protocol is built or parsed here, nowhere else.

    fleet/v1/devices/{device_id}/up/{kind}     the device publishes
    fleet/v1/devices/{device_id}/down/{kind}   the device subscribes

The device id is the CN of the device certificate and the broker's username,
so its alphabet excludes MQTT wildcards (+ #), the level separator (/) and
anything a broker ACL pattern (%u) could misread.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from protocol.errors import TopicError

ROOT = "fleet/v1/devices"
DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{2,62}$"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_SHARE_GROUP = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

UP_KINDS: tuple[str, ...] = ("status", "telemetry", "events", "ota", "media", "ack", "cert")
DOWN_KINDS: tuple[str, ...] = ("config", "ota", "cmd", "media", "cert")

Direction = Literal["up", "down"]


class Delivery(msgspec.Struct, frozen=True):
    """How a kind is published: MQTT QoS and the retain flag."""

    qos: int
    retain: bool


# QoS 1 everywhere: every message carries an id, so redelivery is deduplicated,
# and the edge uplink queue deletes an item only on PUBACK, which QoS 0 never
# sends. Telemetry is batched (up to 500 samples a message), so QoS 1 costs a
# few PUBACKs a minute per device. Retained: the desired config, the current
# OTA offer and the device's availability (birth / last will) — state that a
# late subscriber must see; everything else is an event or a request.
_DELIVERY: dict[tuple[str, str], Delivery] = {
    **{("up", k): Delivery(qos=1, retain=False) for k in UP_KINDS},
    **{("down", k): Delivery(qos=1, retain=False) for k in DOWN_KINDS},
    ("up", "status"): Delivery(qos=1, retain=True),
    ("down", "config"): Delivery(qos=1, retain=True),
    ("down", "ota"): Delivery(qos=1, retain=True),
}


class Topic(msgspec.Struct, frozen=True):
    device_id: str
    direction: Direction
    kind: str

    def __str__(self) -> str:
        return f"{ROOT}/{self.device_id}/{self.direction}/{self.kind}"


def is_device_id(value: object) -> bool:
    return isinstance(value, str) and _DEVICE_ID.fullmatch(value) is not None


def check_device_id(device_id: str) -> str:
    """Return the id unchanged or raise TopicError."""
    if not is_device_id(device_id):
        raise TopicError("topic", f"invalid device id {device_id!r}")
    return device_id


def _kinds(direction: str) -> tuple[str, ...]:
    if direction == "up":
        return UP_KINDS
    if direction == "down":
        return DOWN_KINDS
    raise TopicError("topic", f"invalid direction {direction!r}")


def _build(device_id: str, direction: str, kind: str) -> str:
    check_device_id(device_id)
    if kind not in _kinds(direction):
        raise TopicError("topic", f"unknown {direction} kind {kind!r}")
    return f"{ROOT}/{device_id}/{direction}/{kind}"


def up(device_id: str, kind: str) -> str:
    """Topic a device publishes `kind` on."""
    return _build(device_id, "up", kind)


def down(device_id: str, kind: str) -> str:
    """Topic the server publishes `kind` to one device on."""
    return _build(device_id, "down", kind)


def parse(topic: str) -> Topic:
    """Split a concrete topic (no wildcards) into device id, direction and kind."""
    if not isinstance(topic, str):
        raise TopicError("topic", "topic must be a string")
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:3]) != ROOT:
        raise TopicError("topic", f"not a {ROOT}/<id>/<up|down>/<kind> topic: {topic[:200]!r}")
    _, _, _, device_id, direction, kind = parts
    check_device_id(device_id)
    if kind not in _kinds(direction):
        raise TopicError("topic", f"unknown {direction} kind {kind!r}")
    return Topic(device_id=device_id, direction=direction, kind=kind)  # type: ignore[arg-type]


def check_sender(topic: Topic, sender_id: str) -> Topic:
    """Refuse a message whose topic names another device than the sender (the CN / MQTT username)."""
    if topic.device_id != sender_id:
        raise TopicError("device_mismatch", f"{sender_id!r} published on {topic.device_id!r}'s topic")
    return topic


def delivery(direction: str, kind: str) -> Delivery:
    """QoS and retain flag for a direction and kind."""
    try:
        return _DELIVERY[(direction, kind)]
    except KeyError:
        raise TopicError("topic", f"unknown {direction} kind {kind!r}") from None


def ingest_filter(shared: bool, group: str = "ingest") -> str:
    """Subscription for everything devices send; `shared` uses an MQTT 5 shared subscription."""
    plain = f"{ROOT}/+/up/#"
    if not shared:
        return plain
    if not _SHARE_GROUP.fullmatch(group):
        raise TopicError("topic", f"invalid share group {group!r}")
    return f"$share/{group}/{plain}"


def device_subscription(device_id: str) -> str:
    """The one filter a device subscribes to: its own down/#."""
    return f"{ROOT}/{check_device_id(device_id)}/down/#"


# Broker ACL patterns (Mosquitto acl_file `pattern` lines; %u = username = CN).
ACL_DEVICE_WRITE = f"{ROOT}/%u/up/#"
ACL_DEVICE_READ = f"{ROOT}/%u/down/#"
ACL_SERVICE_READWRITE = f"{ROOT}/#"
