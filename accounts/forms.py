"""Forms of the account pages. Validation of what a user types; the rules stay in accounts.services."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from accounts import services
from accounts.models import Role


def client_address(request) -> str:
    return (request.META.get("REMOTE_ADDR") or "")[:45]


class SignInForm(AuthenticationForm):
    """Django's sign-in, refused after too many failures for the name or the address (throttled)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins. Wait a few minutes and try again.",
    }

    def clean(self):
        username = self.data.get("username", "")
        address = client_address(self.request)
        if not services.login_allowed(username=username, address=address):
            raise ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            services.login_failed(username=username, address=address)
            raise
        services.login_succeeded(username=username, address=address)
        return cleaned


class UserCreateForm(forms.Form):
    username = forms.RegexField(
        r"^[\w.@+-]{1,150}$", max_length=150, help_text="Letters, digits and @ . + - _"
    )
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        min_length=12,
        max_length=128,
        required=False,
        help_text="At least 12 characters. Empty: the user cannot sign in until an admin sets one.",
    )


class UserRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'nightly export'.")
    expires_in_days = forms.IntegerField(
        min_value=0, max_value=3650, required=False, help_text="0 never expires; empty: the default."
    )
