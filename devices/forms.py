"""Forms of the registry pages: input checks only; the rules stay in devices.services."""

from django import forms

from devices.models import DeviceGroup, HardwareModel, SavedFilter, Site
from fleet.web.forms import FastSelect, TextListField

BULK_ACTIONS = [
    ("tag", "Add tags"),
    ("untag", "Remove tags"),
    ("move", "Move to site"),
    ("group", "Add to group"),
    ("ungroup", "Remove from group"),
    ("revoke", "Revoke (cut off at the broker)"),
]


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=BULK_ACTIONS)
    device = forms.MultipleChoiceField(required=False)  # the ticked rows' device ids; choices checked below
    all = forms.BooleanField(required=False, label="Every camera matching the filter")
    filter_query = forms.CharField(required=False, widget=forms.HiddenInput)
    tags = TextListField(required=False, max_length=500)
    site = forms.ModelChoiceField(
        Site.objects.all(),
        required=False,
        empty_label="(no site)",
        widget=FastSelect(attrs={"id": "bulk-site"}),
    )
    group = forms.ModelChoiceField(
        DeviceGroup.objects.all(),
        required=False,
        empty_label="(pick a group)",
        widget=FastSelect(attrs={"id": "bulk-group"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["device"].choices = [(d, d) for d in self.data.getlist("device")] if self.data else []

    def clean(self):
        data = super().clean()
        action = data.get("action")
        if not data.get("device") and not data.get("all"):
            raise forms.ValidationError("Tick at least one camera, or every camera matching the filter.")
        if action in ("tag", "untag") and not data.get("tags"):
            self.add_error("tags", "Name at least one tag.")
        if action in ("group", "ungroup") and not data.get("group"):
            self.add_error("group", "Pick a group.")
        return data


class ColumnsForm(forms.Form):
    columns = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, required=False)

    def __init__(self, *args, choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["columns"].choices = choices


class SaveFilterForm(forms.Form):
    name = forms.CharField(max_length=100, label="Save this filter as")
    criteria_query = forms.CharField(widget=forms.HiddenInput, required=False)


class SiteForm(forms.ModelForm):
    class Meta:
        model = Site
        fields = ["name", "timezone", "address", "latitude", "longitude"]
        help_texts = {"timezone": "IANA zone, e.g. Europe/Berlin: times of this site's cameras show in it."}


class GroupForm(forms.ModelForm):
    class Meta:
        model = DeviceGroup
        fields = ["name", "description"]


class HardwareModelForm(forms.ModelForm):
    class Meta:
        model = HardwareModel
        fields = ["name", "cpu_arch", "accelerator", "ram_mb"]


class SavedFilterForm(forms.ModelForm):
    criteria = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Camera filter parameters, e.g. {"site": [1], "tag": ["outdoor"], "connectivity": ["offline"]}.',
    )

    class Meta:
        model = SavedFilter
        fields = ["name", "description", "criteria"]


class EnrollmentTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'Lisbon install day'.")
    max_uses = forms.IntegerField(
        min_value=1, max_value=100_000, initial=1, help_text="Cameras that may enroll with it."
    )
    expires_in_hours = forms.IntegerField(
        min_value=1, max_value=24 * 366, initial=24, help_text="Hours until it stops working."
    )
    site = forms.ModelChoiceField(
        Site.objects.all(),
        required=False,
        empty_label="(no site)",
        help_text="Enrolled cameras join this site.",
    )
    hardware_model = forms.ModelChoiceField(
        HardwareModel.objects.all(),
        required=False,
        empty_label="(any hardware)",
        help_text="Only cameras of this hardware may use it.",
    )
    groups = forms.ModelMultipleChoiceField(DeviceGroup.objects.all(), required=False)
    tags = TextListField(required=False, max_length=500, help_text="Comma-separated, e.g. outdoor, lte.")
