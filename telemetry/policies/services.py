"""Bandwidth policy CRUD, and publishing each affected device's retained down/config after commit."""

from __future__ import annotations

import json
from collections.abc import Iterable

import msgspec
from django.db import transaction
from django.utils import timezone

from devices.models import Device, DeviceState
from fleet.audit import Actor
from fleet.errors import FleetError
from fleet.services import model_create, model_delete, model_update
from protocol.down import Config, DetectionSettings
from protocol.errors import MessageError
from protocol.messages import make
from telemetry.commands.downlink import send_on_commit
from telemetry.models.policies import BandwidthPolicy, DeviceConfigState
from telemetry.policies.resolve import PolicyIndex, device_config

CHUNK = 500
# Devices that get a config: everything that may still connect.
LIVE_STATES = (DeviceState.PROVISIONING, DeviceState.ACTIVE, DeviceState.QUARANTINED)


class PolicyError(FleetError):
    pass


def _check_detection(data: dict) -> None:
    if "detection" not in data:
        return
    try:
        msgspec.convert(data["detection"], DetectionSettings)
        make(Config, revision=0, config={"detection": data["detection"]})
    except (msgspec.ValidationError, MessageError, TypeError) as exc:
        raise PolicyError("validation_error", "Invalid input.", fields={"detection": [str(exc)]}) from exc


def _scope_devices(policy: BandwidthPolicy) -> Iterable[int]:
    """Primary keys of the devices a policy may apply to (before precedence)."""
    live = Device.objects.filter(state__in=LIVE_STATES)
    if policy.device_id:
        return live.filter(pk=policy.device_id).values_list("pk", flat=True)
    if policy.group_id:
        return live.filter(groups=policy.group_id).values_list("pk", flat=True)
    return live.values_list("pk", flat=True)


def device_configs_publish(*, device_pks: Iterable[int], force: bool = False) -> int:
    """Resolve each device's config; where it changed (or `force`), bump the revision and publish it
    retained on down/config after commit. Returns how many were published. Bulk: 3 queries a chunk."""
    pks = sorted(set(device_pks))
    index = PolicyIndex()
    published = 0
    now = timezone.now()
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start : start + CHUNK]
        devices = Device.objects.filter(pk__in=chunk).prefetch_related("groups")
        states = DeviceConfigState.objects.select_for_update().in_bulk(chunk)
        new, changed, outgoing = [], [], []
        for device in devices:
            policy = index.resolve(device)
            # Compared with the stored JSON, so normalised through JSON (tuples become lists).
            config = json.loads(msgspec.json.encode(device_config(policy)))
            state = states.get(device.pk)
            if state is not None and state.config == config and not force:
                continue
            if state is None:
                state = DeviceConfigState(device=device, revision=0)
                new.append(state)
            else:
                changed.append(state)
            state.revision += 1
            state.config, state.policy, state.published_at = config, policy, now
            outgoing.append((device.device_id, make(Config, revision=state.revision, config=config)))
        DeviceConfigState.objects.bulk_create(new)
        DeviceConfigState.objects.bulk_update(changed, ["revision", "config", "policy", "published_at"])
        for device_id, msg in outgoing:
            send_on_commit(device_id, msg)
        published += len(outgoing)
    return published


def device_config_sync(*, device: Device) -> int:
    """Re-resolve one device (e.g. after its groups changed); publishes only if its config changed."""
    return device_configs_publish(device_pks=[device.pk])


def policy_create(*, actor: Actor, data: dict) -> BandwidthPolicy:
    _check_detection(data)
    with transaction.atomic():
        policy = model_create(model=BandwidthPolicy, actor=actor, data=data)
        device_configs_publish(device_pks=_scope_devices(policy))
    return policy


def policy_update(*, actor: Actor, instance: BandwidthPolicy, data: dict) -> BandwidthPolicy:
    _check_detection(data)
    with transaction.atomic():
        before = set(_scope_devices(instance))  # a scope change also affects the old scope
        policy = model_update(instance=instance, actor=actor, data=data)
        device_configs_publish(device_pks=before | set(_scope_devices(policy)))
    return policy


def policy_delete(*, actor: Actor, instance: BandwidthPolicy) -> None:
    with transaction.atomic():
        affected = set(_scope_devices(instance))
        model_delete(instance=instance, actor=actor)
        device_configs_publish(device_pks=affected)
