"""Who is acting, and the one function every service calls to record a state change."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from fleet.models import AuditEntry, AuditSource

if TYPE_CHECKING:
    from accounts.models import User


@dataclass(frozen=True)
class Actor:
    user: User | None
    source: str
    label: str = ""

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return self.user.get_username() if self.user else self.source

    @classmethod
    def from_request(cls, request, source: str = AuditSource.API) -> Actor:
        user = request.user if request.user.is_authenticated else None
        return cls(user=user, source=source)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(user=None, source=AuditSource.SYSTEM, label=label)

    @classmethod
    def device(cls, device_id: str) -> Actor:
        return cls(user=None, source=AuditSource.DEVICE, label=device_id)


def snapshot(instance: models.Model) -> dict[str, Any]:
    """A JSON-safe picture of a row: concrete fields, and many-to-many fields as sorted primary keys.

    Fields a model names in `audit_exclude` (password hashes, token hashes) never reach the log.
    """
    exclude = set(getattr(instance, "audit_exclude", ()))
    data: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if field.attname not in exclude:
            data[field.attname] = field.value_from_object(instance)
    if instance.pk is not None:
        for field in instance._meta.many_to_many:
            data[field.name] = sorted(getattr(instance, field.name).values_list("pk", flat=True))
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def audit_record(
    *,
    actor: Actor,
    action: str,
    instance: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEntry:
    if instance is not None:
        object_type = object_type or instance._meta.model_name
        object_id = object_id or str(instance.pk)
    return AuditEntry.objects.create(
        actor=actor.user,
        actor_label=actor.name[:150],
        source=actor.source,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=str(instance)[:200] if instance is not None else "",
        before=before,
        after=after,
    )
