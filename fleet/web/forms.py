"""Forms and FleetError: a service's field errors land next to their field."""

from django import forms
from django.forms.utils import flatatt
from django.utils.html import format_html, format_html_join

from fleet.errors import FleetError


def apply_error(form: forms.BaseForm, exc: FleetError) -> None:
    """Put a service's refusal on the form: known fields next to the field, the rest on top."""
    placed = False
    for field, messages in (exc.fields or {}).items():
        if field in form.fields:
            for message in messages if isinstance(messages, list | tuple) else [messages]:
                form.add_error(field, str(message))
            placed = True
    # The message says more than a field's short note (e.g. why the model does not load), unless it is
    # the generic one a plain validation error carries.
    if not placed or exc.message not in ("Invalid input.",):
        form.add_error(None, exc.message)


class TextListField(forms.CharField):
    """Comma- or space-separated names (tags, labels) as a list."""

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [v for v in (p.strip() for p in text.replace(",", " ").split()) if v]

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list | tuple) else value


class FastSelect(forms.Select):
    """A <select> rendered in Python: Django renders each <option> through a template, which cost a
    list page more than its SQL with a few hundred sites and groups (bench/ui.py)."""

    def render(self, name, value, attrs=None, renderer=None):
        chosen = {
            str(v) for v in (value if isinstance(value, list | tuple) else [value]) if v not in (None, "")
        }
        final = self.build_attrs(self.attrs, attrs or {})
        final["name"] = name
        if self.allow_multiple_selected:
            final["multiple"] = True
        rows = []
        for _, group, _ in self.optgroups(name, list(chosen)):
            for option in group:
                key = "" if option["value"] is None else str(option["value"])
                rows.append((key, " selected" if key in chosen else "", option["label"]))
        options = format_html_join("", '<option value="{}"{}>{}</option>', rows)
        return format_html("<select{}>{}</select>", flatatt(final), options)


class FastSelectMultiple(FastSelect):
    allow_multiple_selected = True

    def value_from_datadict(self, data, files, name):
        getter = getattr(data, "getlist", None)
        return getter(name) if getter else data.get(name)


class OneOfMany(FastSelect):
    """A multiple-choice filter shown as one compact select (with "any"), still reading every value of
    the query string: ?site=1&site=2 from a link or the API works, the picker offers one at a time."""

    def __init__(self, attrs=None, choices=(), any_label: str = "Any"):
        super().__init__(attrs, choices)
        self.any_label = any_label

    def value_from_datadict(self, data, files, name):
        getter = getattr(data, "getlist", None)
        values = getter(name) if getter else data.get(name)
        if isinstance(values, str):
            values = [values]
        return [v for v in values or [] if v]

    def optgroups(self, name, value, attrs=None):
        groups = super().optgroups(name, value, attrs)
        empty = self.create_option(name, "", self.any_label, not value, 0)
        return [(None, [empty], 0), *groups]

    def render(self, name, value, attrs=None, renderer=None):
        return super().render(name, value if isinstance(value, list | tuple) else [value], attrs, renderer)


def plain_choices(field: forms.Field) -> list[tuple[str, str]]:
    """A model choice field's options as (value, name) pairs from one values_list query: building a
    model instance per option cost more than the page's own rows with 200 groups (bench/ui.py)."""
    queryset = getattr(field, "queryset", None)
    if queryset is None:
        return list(field.choices)
    names = {f.name for f in queryset.model._meta.concrete_fields}
    if "name" not in names:
        return list(field.choices)
    key = getattr(field, "to_field_name", None) or "pk"
    return [(str(v), label) for v, label in queryset.values_list(key, "name")]


def compact_filters(form: forms.BaseForm, names) -> None:
    """Give the named multiple-choice fields of a filter form the compact OneOfMany picker."""
    for name in names:
        field = form.fields.get(name)
        if field is not None:
            field.widget = OneOfMany(choices=plain_choices(field))


def time_filters(form: forms.BaseForm, names=("after", "before")) -> None:
    """Date-time pickers for a filter form's ISO time fields (read as UTC, as the API reads them)."""
    for name in names:
        if name in form.fields:
            form.fields[name].widget = forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1})


def choice_filter(form: forms.BaseForm, name: str, choices) -> None:
    """A filter's select with our own labels (e.g. Any / Open / Acknowledged for a boolean)."""
    if name in form.fields:
        form.fields[name].widget = forms.Select(choices=choices)
