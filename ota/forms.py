"""Forms of the OTA pages: input checks; the rollout rules stay in ota.services."""

from django import forms

from devices.models import DeviceGroup, HardwareModel, SavedFilter, Site
from fleet.web.forms import TextListField
from ota.models import ModelArtifact, Release


class ArtifactUploadForm(forms.Form):
    file = forms.FileField(help_text="An ONNX model; it is checked with ONNX Runtime before it is stored.")
    name = forms.CharField(max_length=100, help_text="Model name, lowercase, e.g. person-det.")
    version = forms.CharField(max_length=64, help_text="e.g. 2.1.0")
    hardware_models = forms.ModelMultipleChoiceField(HardwareModel.objects.all(), required=False,
                                                     help_text="Hardware this build runs on.")  # fmt: skip
    labels = TextListField(required=False, help_text="Empty: read from the model's metadata.")
    notes = forms.CharField(widget=forms.Textarea, required=False, max_length=4000)


class ReleaseForm(forms.Form):
    artifact = forms.ModelChoiceField(
        ModelArtifact.objects.all(), help_text="The model file this release ships."
    )
    hardware_models = forms.ModelMultipleChoiceField(
        HardwareModel.objects.all(), help_text="Cameras that may install it."
    )
    builds = forms.ModelMultipleChoiceField(
        ModelArtifact.objects.all(),
        required=False,
        label="Builds per hardware",
        help_text="Other builds of the model (int8 for low-power cameras, say): each is signed for the "
        "hardware models above that it targets; the artifact serves the rest.",
    )
    version = forms.CharField(max_length=64, required=False, help_text="Empty: the artifact's version.")
    min_agent_version = forms.RegexField(r"^\d+(\.\d+)*$", max_length=64, initial="1.0")
    expires_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="Empty: the default expiry."
    )
    notes = forms.CharField(max_length=1000, required=False)


class DeploymentForm(forms.Form):
    """Targets (any of) and a strategy whose defaults are safe: one canary, two waves, thresholds on."""

    name = forms.CharField(max_length=100)
    release = forms.ModelChoiceField(Release.objects.select_related("track").order_by("-id"))
    groups = forms.ModelMultipleChoiceField(DeviceGroup.objects.all(), required=False)
    sites = forms.ModelMultipleChoiceField(Site.objects.all(), required=False)
    tags = TextListField(required=False, help_text="Cameras with any of these tags.")
    hardware_models = forms.ModelMultipleChoiceField(HardwareModel.objects.all(), required=False)
    saved_filters = forms.ModelMultipleChoiceField(
        SavedFilter.objects.all(), required=False, label="Saved filters (dynamic groups)"
    )
    devices = TextListField(required=False, label="Cameras (device ids)")
    canary_count = forms.IntegerField(min_value=0, initial=1, help_text="Cameras updated first, alone.")
    canary_devices = TextListField(required=False, help_text="Or name the canaries (device ids).")
    waves = forms.CharField(
        initial="25, 100", help_text="Cumulative percentages after the canaries, ending at 100."
    )
    soak_s = forms.IntegerField(min_value=0, initial=120, label="Soak (s)", help_text="Wait between waves.")
    pause_failure_rate = forms.FloatField(min_value=0, max_value=1, required=False, initial=0.1,
                                          help_text="Pause at this failure rate (0..1).")  # fmt: skip
    abort_failure_rate = forms.FloatField(min_value=0, max_value=1, required=False, initial=0.5,
                                          help_text="Abort at this failure rate (0..1).")  # fmt: skip
    min_finished = forms.IntegerField(
        min_value=1, initial=1, help_text="Thresholds apply from this many finished cameras."
    )
    max_concurrent = forms.IntegerField(min_value=1, required=False)
    max_per_minute = forms.IntegerField(min_value=1, required=False)
    device_timeout_s = forms.IntegerField(min_value=1, initial=3600, label="Camera timeout (s)")
    window_start = forms.CharField(
        required=False, max_length=5, help_text="Maintenance window HH:MM, site time."
    )
    window_end = forms.CharField(required=False, max_length=5)
    auto_rollback = forms.BooleanField(
        required=False, help_text="On abort, ship each camera its previous release."
    )
    gates = forms.JSONField(
        required=False,
        label="Quality gates",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Thresholds a wave must meet against cameras still on the old model before the next wave, "
        'e.g. {"min_devices": 3, "latency_p95_regression": 0.2, "fps_drop": 0.2, "on_fail": "pause"}. Empty: none.',
    )
    shadow = forms.JSONField(
        required=False,
        label="Shadow evaluation",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text='Run the release beside the active model first, e.g. {"share": 0.2, "cpu_budget_pct": 25, '
        '"soak_s": 600}; each wave switches once its gate passes. Empty: switch at once.',
    )
    start_now = forms.BooleanField(required=False, initial=True, label="Start right away")

    scheduled_at = forms.DateTimeField(
        required=False,
        label="Start at (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: as soon as it is started. Later: it waits, listed under Scheduled.",
    )

    TARGET_FIELDS = ("groups", "sites", "tags", "hardware_models", "saved_filters", "devices")

    def clean_waves(self):
        try:
            return [int(w) for w in self.cleaned_data["waves"].replace(",", " ").split()]
        except ValueError:
            raise forms.ValidationError("Whole percentages, e.g. 10, 50, 100.") from None

    def targets(self) -> dict:
        """The service's target selectors from the ticked fields (ids, or names for tags and devices)."""
        data = self.cleaned_data
        out = {}
        for name in self.TARGET_FIELDS:
            values = data.get(name) or []
            if values:
                out[name] = list(values) if name in ("tags", "devices") else [v.pk for v in values]
        return out

    def service_data(self) -> dict:
        data = dict(self.cleaned_data)
        strategy = {k: data[k] for k in ("canary_count", "canary_devices", "waves", "soak_s", "pause_failure_rate",
                                          "abort_failure_rate", "min_finished", "max_concurrent", "max_per_minute",
                                          "device_timeout_s", "window_start", "window_end", "auto_rollback", "scheduled_at")}  # fmt: skip
        strategy["gates"] = data.get("gates") or {}
        strategy["shadow"] = data.get("shadow") or {}
        return {"name": data["name"], "release": data["release"], "targets": self.targets(), **strategy}
