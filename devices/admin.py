from django.contrib import admin

from devices.models import Device, DeviceGroup, HardwareModel, SavedFilter, Site, Tag

admin.site.register([Site, HardwareModel, DeviceGroup, Tag, SavedFilter])


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("device_id", "name", "site", "state", "last_seen_at", "agent_version", "model_version")
    list_filter = ("state", "site", "hardware_model")
    search_fields = ("device_id", "name", "serial")
    list_select_related = ("site", "hardware_model")
