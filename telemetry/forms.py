"""Forms of telemetry's settings pages: input checks; the rules stay in the services and models."""

from django import forms

from devices.models import Device
from fleet.web.forms import TextListField
from protocol.vocab import UPLINK_CLASSES
from telemetry.models import BandwidthPolicy
from telemetry.models.events import AlertRule

TIME = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")


class AlertRuleForm(forms.ModelForm):
    labels = TextListField(
        required=False, help_text="Comma-separated, e.g. person, vehicle. Empty: any label."
    )
    webhook_secret = forms.CharField(
        required=False, max_length=200, widget=forms.PasswordInput(render_value=False),
        help_text="Signs webhook requests. Leave empty to keep the current one.",
    )  # fmt: skip

    class Meta:
        model = AlertRule
        fields = [
            "name",
            "labels",
            "min_score",
            "sites",
            "groups",
            "quiet_start",
            "quiet_end",
            "webhook_url",
            "webhook_secret",
            "enabled",
        ]
        widgets = {"quiet_start": TIME, "quiet_end": TIME}
        help_texts = {
            "sites": "Empty sites and groups: every camera.",
            "quiet_start": "In each camera's site time zone.",
        }

    def clean_webhook_secret(self):
        # An empty field keeps the stored secret (it is never shown back).
        return self.cleaned_data.get("webhook_secret") or (
            self.instance.webhook_secret if self.instance.pk else ""
        )


class BandwidthPolicyForm(forms.ModelForm):
    device = forms.CharField(required=False, max_length=63, label="Camera (device id)",
                             help_text="One camera, or one group, or neither for the fleet default.")  # fmt: skip
    classes_allowed = forms.MultipleChoiceField(
        choices=[(c, c) for c in UPLINK_CLASSES],
        initial=list(UPLINK_CLASSES),
        widget=forms.CheckboxSelectMultiple,
    )
    class_priority = TextListField(
        required=False, help_text=f"Highest first, e.g. {', '.join(UPLINK_CLASSES)}."
    )
    detection = forms.JSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Detection settings, e.g. {"min_score": 0.6}.',
    )

    class Meta:
        model = BandwidthPolicy
        fields = ["name", "device", "group", "priority", "max_kbps", "daily_budget_mb", "classes_allowed", "class_priority",
                  "quiet_start", "quiet_end", "metered", "max_snapshot_bytes", "max_clip_bytes", "detection"]  # fmt: skip
        widgets = {"quiet_start": TIME, "quiet_end": TIME}
        labels = {"max_kbps": "Max kbit/s", "daily_budget_mb": "Daily budget (MiB)",
                  "max_snapshot_bytes": "Largest snapshot (bytes)", "max_clip_bytes": "Largest clip (bytes)"}  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.device_id:
            self.initial["device"] = self.instance.device.device_id

    def clean_device(self):
        value = (self.cleaned_data.get("device") or "").strip()
        if not value:
            return None
        device = Device.objects.filter(device_id=value).first()
        if device is None:
            raise forms.ValidationError("No camera has this device id.")
        return device

    def clean_detection(self):
        return self.cleaned_data.get("detection") or {}
