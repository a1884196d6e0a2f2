"""Audited create/update/delete shared by every app's services: validate, write, record, one transaction."""

from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import models, transaction

from fleet.audit import Actor, audit_record, snapshot
from fleet.errors import FleetError

M = TypeVar("M", bound=models.Model)


def validation_error(exc: ValidationError) -> FleetError:
    fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    return FleetError("validation_error", "Invalid input.", fields=fields)


def _split_m2m(model: type[models.Model], data: dict[str, Any]) -> tuple[dict, dict]:
    m2m_names = {f.name for f in model._meta.many_to_many}
    plain = {k: v for k, v in data.items() if k not in m2m_names}
    m2m = {k: v for k, v in data.items() if k in m2m_names}
    return plain, m2m


def _save(instance: models.Model, m2m: dict[str, Any]) -> None:
    try:
        instance.full_clean()
    except ValidationError as exc:
        raise validation_error(exc) from exc
    instance.save()
    for name, values in m2m.items():
        getattr(instance, name).set(values)


@transaction.atomic
def model_create(*, model: type[M], actor: Actor, data: dict[str, Any], action: str = "") -> M:
    plain, m2m = _split_m2m(model, data)
    instance = model(**plain)
    _save(instance, m2m)
    audit_record(
        actor=actor,
        action=action or f"{model._meta.model_name}.create",
        instance=instance,
        after=snapshot(instance),
    )
    return instance


@transaction.atomic
def model_update(*, instance: M, actor: Actor, data: dict[str, Any], action: str = "") -> M:
    before = snapshot(instance)
    plain, m2m = _split_m2m(type(instance), data)
    for name, value in plain.items():
        setattr(instance, name, value)
    _save(instance, m2m)
    after = snapshot(instance)
    if after != before:
        audit_record(
            actor=actor,
            action=action or f"{instance._meta.model_name}.update",
            instance=instance,
            before=before,
            after=after,
        )
    return instance


@transaction.atomic
def model_delete(*, instance: models.Model, actor: Actor, action: str = "") -> None:
    before = snapshot(instance)
    audit_record(
        actor=actor, action=action or f"{instance._meta.model_name}.delete", instance=instance, before=before
    )
    try:
        instance.delete()
    except models.ProtectedError as exc:
        count = len(exc.protected_objects)
        raise FleetError(
            "in_use",
            f"{instance._meta.verbose_name} '{instance}' is still used by {count} object(s); move or delete them first.",
            status=409,
        ) from exc
