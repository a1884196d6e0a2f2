from django.contrib import admin

from ota.models import Deployment, DeviceUpdate, KeyListDocument, ModelArtifact, Release, SigningKey


class ReadOnlyAdmin(admin.ModelAdmin):
    """Writes go through services (validated, signed, audited); the admin only shows."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ModelArtifact)
class ModelArtifactAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "size", "sha256", "created_at")
    search_fields = ("name", "version", "sha256")


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ("keyid", "role", "created_at", "revoked_at")
    exclude = ("encrypted_private_key",)


@admin.register(KeyListDocument)
class KeyListAdmin(ReadOnlyAdmin):
    list_display = ("version", "expires_at", "created_at")


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ("track", "version", "serial", "expires_at", "created_at")
    list_filter = ("track",)


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ("name", "release", "state", "current_wave", "created_at")
    list_filter = ("state",)


@admin.register(DeviceUpdate)
class DeviceUpdateAdmin(ReadOnlyAdmin):
    list_display = ("device", "deployment", "wave", "state", "reason", "updated_at")
    list_filter = ("state",)
    raw_id_fields = ("device", "deployment")
