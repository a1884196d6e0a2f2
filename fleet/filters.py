"""Filter building blocks shared by every app's FilterSets."""

from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField, ModelMultipleChoiceField

# Primary keys are 64-bit signed: anything outside is no row, and must not reach the database driver.
MAX_ID = 2**63 - 1


class IdMultipleChoiceField(ModelMultipleChoiceField):
    def _check_values(self, value):
        for item in value:
            try:
                number = int(str(item))
            except ValueError:
                # Values go in params: the message is %-formatted later, and input may hold "%".
                raise ValidationError(
                    "'%(value)s' is not an id.", code="invalid_pk_value", params={"value": item}
                ) from None
            if not 1 <= number <= MAX_ID:
                raise ValidationError(
                    "No object with id %(value)s.", code="invalid_choice", params={"value": item}
                )
        return super()._check_values(value)


class IdMultipleChoiceFilter(django_filters.ModelMultipleChoiceFilter):
    """Objects by id, any of; out-of-range ids are a clear 400, never a driver overflow."""

    field_class = IdMultipleChoiceField


class UtcDateTimeField(IsoDateTimeField):
    def clean(self, value):
        result = super().clean(value)
        if result is None:
            return None
        try:
            return result.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Date is out of range.", code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """ISO 8601 time, normalised to UTC: PostgreSQL refuses offsets beyond ±15:59 that Python accepts."""

    field_class = UtcDateTimeField
