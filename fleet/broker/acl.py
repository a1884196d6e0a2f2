"""Who may connect as whom and touch which topic: the one copy of the broker-side rules.

The embedded broker enforces these functions directly; the Mosquitto ACL file
(fleet/broker/mosquitto.py) states the same rules in Mosquitto's pattern syntax.
Identity = certificate CN (see fleet.pki for the reserved server identities).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fleet import pki
from protocol.topics import ROOT as DEVICES_ROOT  # fleet/v1/devices/{device_id}/{up|down}/{kind}

_ROOT_LEVELS = DEVICES_ROOT.split("/")


class Role(enum.StrEnum):
    DEVICE = "device"
    INGEST = "ingest"  # reads and writes every device topic
    ADMIN = "admin"  # broker administration only (Mosquitto $CONTROL); no device topics


@dataclass(frozen=True, slots=True)
class Identity:
    name: str  # the certificate CN
    role: Role


def identity_for(common_name: str, client_id: str) -> Identity | None:
    """The identity a certificate CN may act as with this client id, or None to refuse the connection.

    A device must use its id as client id, so it can neither take over nor cut off
    another client's session. A server identity may add a suffix ("fleet-ingest-2")
    so several replicas connect at once; device ids can never start with "fleet-".
    """
    if common_name == pki.INGEST_IDENTITY or common_name == pki.ADMIN_IDENTITY:
        if client_id != common_name and not client_id.startswith(common_name + "-"):
            return None
        return Identity(common_name, Role.INGEST if common_name == pki.INGEST_IDENTITY else Role.ADMIN)
    try:
        pki.check_device_id(common_name)
    except pki.PKIError:
        return None
    return Identity(common_name, Role.DEVICE) if client_id == common_name else None


def _levels_within(levels: list[str], owned: list[str]) -> bool:
    """True if the first levels equal `owned` literally (no wildcard there)."""
    return len(levels) >= len(owned) and levels[: len(owned)] == owned


def may_publish(identity: Identity, topic: str) -> bool:
    """PUBLISH and will messages. A device writes only its own up/ subtree."""
    if not topic or "+" in topic or "#" in topic or topic.startswith("$"):
        return False
    levels = topic.split("/")
    if identity.role is Role.INGEST:
        return _levels_within(levels, _ROOT_LEVELS) and len(levels) > len(_ROOT_LEVELS)
    if identity.role is Role.DEVICE:
        return _levels_within(levels, [*_ROOT_LEVELS, identity.name, "up"])
    return False


def may_subscribe(identity: Identity, topic_filter: str) -> bool:
    """SUBSCRIBE: the filter must lie inside what the identity may read, with no wildcard above it."""
    levels = topic_filter.split("/")
    if identity.role is Role.INGEST:
        return _levels_within(levels, _ROOT_LEVELS) and len(levels) > len(_ROOT_LEVELS)
    if identity.role is Role.DEVICE:
        return _levels_within(levels, [*_ROOT_LEVELS, identity.name, "down"])
    return False


def may_receive(identity: Identity, topic: str) -> bool:
    """Each delivery: a device reads only its own down/ subtree."""
    levels = topic.split("/")
    if identity.role is Role.INGEST:
        return _levels_within(levels, _ROOT_LEVELS)
    if identity.role is Role.DEVICE:
        return _levels_within(levels, [*_ROOT_LEVELS, identity.name, "down"])
    return False
