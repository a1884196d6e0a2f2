from django.contrib import admin

from fleet.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only, even for superusers."""

    list_display = ("created_at", "actor_label", "source", "action", "object_type", "object_id")
    list_filter = ("source", "object_type")
    search_fields = ("action", "object_id", "actor_label")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
