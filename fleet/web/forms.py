"""Forms and FleetError: a service's field errors land next to their field."""

from django import forms

from fleet.errors import FleetError


def apply_error(form: forms.BaseForm, exc: FleetError) -> None:
    """Put a service's refusal on the form: known fields next to the field, the rest on top."""
    placed = False
    for field, messages in (exc.fields or {}).items():
        if field in form.fields:
            for message in messages if isinstance(messages, list | tuple) else [messages]:
                form.add_error(field, str(message))
            placed = True
    if not placed:
        form.add_error(None, exc.message)


class TextListField(forms.CharField):
    """Comma- or space-separated names (tags, labels) as a list."""

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [v for v in (p.strip() for p in text.replace(",", " ").split()) if v]

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list | tuple) else value
