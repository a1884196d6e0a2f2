from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import ApiToken, User


@admin.register(User)
class FleetUserAdmin(UserAdmin):
    fieldsets = (*UserAdmin.fieldsets, ("Fleet", {"fields": ("role",)}))
    list_display = ("username", "email", "role", "is_active", "is_superuser")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "user", "created_at", "expires_at", "revoked_at")
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at")
