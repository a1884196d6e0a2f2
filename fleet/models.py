"""Cross-app models: the append-only audit log."""

from django.conf import settings
from django.db import models


class AuditSource(models.TextChoices):
    UI = "ui"
    API = "api"
    DEVICE = "device"
    SYSTEM = "system"


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("the audit log is append-only")

    def delete(self):
        raise TypeError("the audit log is append-only")


class AuditEntry(models.Model):
    """Who did what to which object, with the object before and after, from where."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text so the entry still names its actor after the user is deleted.
    actor_label = models.CharField(max_length=150)
    source = models.CharField(max_length=8, choices=AuditSource.choices)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ("-id",)
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise TypeError("the audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("the audit log is append-only")
