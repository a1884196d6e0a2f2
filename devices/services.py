"""Every write to the device registry: validated, audited, in one transaction."""

import secrets
from collections.abc import Iterable

from django.db import models, transaction
from django.utils import timezone

from devices.filters import DeviceFilterSet, criteria_querydict
from devices.models import Device, DeviceGroup, DeviceState, HardwareModel, SavedFilter, Site, Tag
from fleet.audit import Actor, audit_record, snapshot
from fleet.errors import FleetError
from fleet.models import AuditEntry
from fleet.services import model_create, model_delete, model_update


class DeviceError(FleetError):
    pass


# Lifecycle: which states a device may move to from each state. Decommissioned is final.
TRANSITIONS: dict[str, set[str]] = {
    DeviceState.PROVISIONING: {DeviceState.ACTIVE, DeviceState.DECOMMISSIONED},
    DeviceState.ACTIVE: {DeviceState.QUARANTINED, DeviceState.DECOMMISSIONED},
    DeviceState.QUARANTINED: {DeviceState.ACTIVE, DeviceState.DECOMMISSIONED},
    DeviceState.DECOMMISSIONED: set(),
}


def _configs_follow_groups(device_pks: list[int]) -> None:
    """Group membership decides a device's bandwidth policy: republish configs that changed because of it."""
    from telemetry.policies.services import device_configs_publish  # telemetry builds on devices, not back

    device_configs_publish(device_pks=device_pks)


def new_device_id() -> str:
    return f"cam-{secrets.token_hex(6)}"


def _refuse_if_in_use(instance: models.Model, related: str, what: str) -> None:
    count = getattr(instance, related).count()
    if count:
        raise DeviceError(
            "in_use", f"{what} '{instance}' still has {count} device(s); move them first.", status=409
        )


# Sites, hardware models, groups: plain audited CRUD, plus refusing to orphan devices.


def site_create(*, actor: Actor, data: dict) -> Site:
    return model_create(model=Site, actor=actor, data=data)


def site_update(*, actor: Actor, instance: Site, data: dict) -> Site:
    return model_update(instance=instance, actor=actor, data=data)


def site_delete(*, actor: Actor, instance: Site) -> None:
    _refuse_if_in_use(instance, "devices", "Site")
    model_delete(instance=instance, actor=actor)


def hardware_model_create(*, actor: Actor, data: dict) -> HardwareModel:
    return model_create(model=HardwareModel, actor=actor, data=data)


def hardware_model_update(*, actor: Actor, instance: HardwareModel, data: dict) -> HardwareModel:
    return model_update(instance=instance, actor=actor, data=data)


def hardware_model_delete(*, actor: Actor, instance: HardwareModel) -> None:
    _refuse_if_in_use(instance, "devices", "Hardware model")
    model_delete(instance=instance, actor=actor)


def group_create(*, actor: Actor, data: dict) -> DeviceGroup:
    return model_create(model=DeviceGroup, actor=actor, data=data)


def group_update(*, actor: Actor, instance: DeviceGroup, data: dict) -> DeviceGroup:
    return model_update(instance=instance, actor=actor, data=data)


def group_delete(*, actor: Actor, instance: DeviceGroup) -> None:
    """Deleting a group only removes the membership; its devices stay."""
    model_delete(instance=instance, actor=actor)


def tag_create(*, actor: Actor, data: dict) -> Tag:
    return model_create(model=Tag, actor=actor, data=data)


def tag_update(*, actor: Actor, instance: Tag, data: dict) -> Tag:
    return model_update(instance=instance, actor=actor, data=data)


def tag_delete(*, actor: Actor, instance: Tag) -> None:
    model_delete(instance=instance, actor=actor)


def tags_resolve(*, names: Iterable[str]) -> list[Tag]:
    """Tags by name, created on first use (operators tag freely; a typo is still a validated slug)."""
    tags = []
    for name in dict.fromkeys(n.strip().lower() for n in names):
        tag = Tag.objects.filter(name=name).first()
        if tag is None:
            tag = Tag(name=name)
            try:
                tag.full_clean()
            except Exception as exc:
                raise DeviceError(
                    "validation_error", f"Invalid tag '{name}'.", fields={"tags": [str(exc)]}
                ) from exc
            tag.save()
        tags.append(tag)
    return tags


# Devices.


def device_create(*, actor: Actor, data: dict) -> Device:
    data = dict(data)
    data.setdefault("device_id", new_device_id())
    if Device.objects.filter(device_id=data["device_id"]).exists():
        raise DeviceError(
            "duplicate",
            f"Device id '{data['device_id']}' is taken.",
            fields={"device_id": ["Taken."]},
            status=409,
        )
    if data.get("serial") and Device.objects.filter(serial=data["serial"]).exists():
        raise DeviceError(
            "duplicate",
            f"Serial '{data['serial']}' is registered already.",
            fields={"serial": ["Taken."]},
            status=409,
        )
    if "tags" in data:
        data["tags"] = tags_resolve(names=data["tags"])
    state = data.get("state", DeviceState.PROVISIONING)
    if state == DeviceState.DECOMMISSIONED:
        raise DeviceError(
            "invalid_state", "A new device cannot start decommissioned.", fields={"state": ["Invalid."]}
        )
    return model_create(model=Device, actor=actor, data=data)


def device_update(*, actor: Actor, instance: Device, data: dict) -> Device:
    data = dict(data)
    if "device_id" in data and data["device_id"] != instance.device_id:
        raise DeviceError("immutable", "The device id never changes.", fields={"device_id": ["Read-only."]})
    if "tags" in data:
        data["tags"] = tags_resolve(names=data["tags"])
    state = data.pop("state", None)
    with transaction.atomic():
        device = model_update(instance=instance, actor=actor, data=data)
        if "groups" in data:
            _configs_follow_groups([device.pk])
        if state is not None and state != device.state:
            device = device_transition(actor=actor, device=device, state=state)
    return device


@transaction.atomic
def device_transition(*, actor: Actor, device: Device, state: str, reason: str = "") -> Device:
    """Move a device along its lifecycle; refuses moves TRANSITIONS does not allow."""
    if state not in TRANSITIONS.get(device.state, set()):
        raise DeviceError(
            "invalid_transition",
            f"A device cannot go from {device.state} to {state}.",
            fields={
                "state": [f"Allowed from {device.state}: {sorted(TRANSITIONS[device.state]) or 'none'}."]
            },
            status=409,
        )
    before = snapshot(device)
    device.state = state
    device.save(update_fields=["state", "updated_at"])
    after = snapshot(device)
    if reason:
        after["reason"] = reason
    audit_record(actor=actor, action=f"device.{state}", instance=device, before=before, after=after)
    if state in (DeviceState.QUARANTINED, DeviceState.DECOMMISSIONED):
        from devices.revocation import certificates_revoke  # cut it off at the broker after commit

        certificates_revoke(actor=actor, device=device, reason=state)
    return device


def device_delete(*, actor: Actor, instance: Device) -> None:
    """Only devices that never went live or are decommissioned may be deleted."""
    if instance.state not in (DeviceState.PROVISIONING, DeviceState.DECOMMISSIONED):
        raise DeviceError(
            "invalid_state", f"Decommission device {instance.device_id} before deleting it.", status=409
        )
    model_delete(instance=instance, actor=actor)


def _bulk_audit(*, actor: Actor, action: str, devices: list[Device], before: dict[int, dict]) -> None:
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor=actor.user,
            actor_label=actor.name[:150],
            source=actor.source,
            action=action,
            object_type="device",
            object_id=str(d.pk),
            object_repr=str(d)[:200],
            before=before[d.pk],
            after=snapshot(d),
        )
        for d in devices
    )


def _bulk_devices(device_ids: list[str]) -> list[Device]:
    devices = list(Device.objects.filter(device_id__in=device_ids).prefetch_related("groups", "tags"))
    missing = sorted(set(device_ids) - {d.device_id for d in devices})
    if missing:
        raise DeviceError(
            "not_found",
            f"{len(missing)} device id(s) not found.",
            fields={"device_ids": missing[:50]},
            status=404,
        )
    return devices


@transaction.atomic
def devices_bulk_tag(*, actor: Actor, device_ids: list[str], add: list[str], remove: list[str]) -> int:
    devices = _bulk_devices(device_ids)
    before = {d.pk: snapshot(d) for d in devices}
    add_tags, remove_tags = tags_resolve(names=add), Tag.objects.filter(name__in=remove)
    through = Device.tags.through
    through.objects.filter(device__in=devices, tag__in=remove_tags).delete()
    through.objects.bulk_create(
        [through(device=d, tag=t) for d in devices for t in add_tags], ignore_conflicts=True
    )
    _bulk_audit(actor=actor, action="device.bulk_tag", devices=devices, before=before)
    return len(devices)


@transaction.atomic
def devices_bulk_group(
    *, actor: Actor, device_ids: list[str], add: list[DeviceGroup], remove: list[DeviceGroup]
) -> int:
    devices = _bulk_devices(device_ids)
    before = {d.pk: snapshot(d) for d in devices}
    through = Device.groups.through
    through.objects.filter(device__in=devices, devicegroup__in=remove).delete()
    through.objects.bulk_create(
        [through(device=d, devicegroup=g) for d in devices for g in add], ignore_conflicts=True
    )
    _bulk_audit(actor=actor, action="device.bulk_group", devices=devices, before=before)
    _configs_follow_groups([d.pk for d in devices])
    return len(devices)


@transaction.atomic
def devices_bulk_move(*, actor: Actor, device_ids: list[str], site: Site | None) -> int:
    devices = _bulk_devices(device_ids)
    before = {d.pk: snapshot(d) for d in devices}
    Device.objects.filter(pk__in=[d.pk for d in devices]).update(site=site, updated_at=timezone.now())
    for d in devices:
        d.site = site
    _bulk_audit(actor=actor, action="device.bulk_move", devices=devices, before=before)
    return len(devices)


# Saved filters.


def _check_criteria(criteria: dict) -> None:
    if not isinstance(criteria, dict):
        raise DeviceError(
            "validation_error", "criteria must be an object.", fields={"criteria": ["Not an object."]}
        )
    known = set(DeviceFilterSet.base_filters)
    unknown = sorted(set(criteria) - known)
    if unknown:
        raise DeviceError(
            "validation_error",
            f"Unknown filter(s): {', '.join(unknown)}.",
            fields={"criteria": [f"Known filters: {', '.join(sorted(known))}."]},
        )
    filterset = DeviceFilterSet(criteria_querydict(criteria), queryset=Device.objects.none())
    if not filterset.is_valid():
        raise DeviceError(
            "validation_error", "Invalid filter criteria.", fields={"criteria": filterset.errors}
        )


def saved_filter_create(*, actor: Actor, data: dict) -> SavedFilter:
    _check_criteria(data.get("criteria", {}))
    return model_create(model=SavedFilter, actor=actor, data=data)


def saved_filter_update(*, actor: Actor, instance: SavedFilter, data: dict) -> SavedFilter:
    if "criteria" in data:
        _check_criteria(data["criteria"])
    return model_update(instance=instance, actor=actor, data=data)


def saved_filter_delete(*, actor: Actor, instance: SavedFilter) -> None:
    model_delete(instance=instance, actor=actor)
