"""Forms and FleetError: a service's field errors land next to their field."""

from django import forms
from django.forms.utils import flatatt
from django.utils.safestring import mark_safe

from fleet.errors import FleetError
from fleet.web.html import escape


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
    """A <select> rendered in Python straight from its choices: Django renders each <option> through
    a template, and even its `optgroups()` builds a dict of attributes per option; with a few
    hundred sites and groups either cost a list page more than its SQL (bench/ui.py)."""

    def leading_options(self, chosen: set[str]) -> list[tuple[str, str, bool]]:
        """(value, label, selected) options shown before the choices."""
        return []

    def render(self, name, value, attrs=None, renderer=None):
        chosen = {
            str(v) for v in (value if isinstance(value, list | tuple) else [value]) if v not in (None, "")
        }
        final = self.build_attrs(self.attrs, attrs or {})
        final["name"] = name
        if self.allow_multiple_selected:
            final["multiple"] = True
        rows = [_option(key, label, selected) for key, label, selected in self.leading_options(chosen)]
        for key, label in self.choices:
            if isinstance(label, list | tuple):  # an option group: (group name, [(value, label), ...])
                inner = "".join(_option(str(k), sub, str(k) in chosen) for k, sub in label)
                rows.append(f'<optgroup label="{escape(str(key))}">{inner}</optgroup>')
            else:
                key = "" if key is None else str(key)
                rows.append(_option(key, label, key in chosen))
        return mark_safe(f"<select{flatatt(final)}>{''.join(rows)}</select>")  # noqa: S308 - every part escaped above


def _option(value: str, label, selected: bool) -> str:
    return f'<option value="{escape(value)}"{" selected" if selected else ""}>{escape(label)}</option>'


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

    def leading_options(self, chosen: set[str]) -> list[tuple[str, str, bool]]:
        return [("", self.any_label, not chosen)]

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
