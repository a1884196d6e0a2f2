import django_tables2 as tables

from accounts.models import ApiToken, User
from fleet.web.tables import TimeColumn


class UserTable(tables.Table):
    username = tables.Column(linkify=("accounts:user", {"pk": tables.A("pk")}))
    last_login = TimeColumn(verbose_name="Last sign-in")

    class Meta:
        model = User
        fields = ("username", "email", "role", "is_active", "last_login")
        empty_text = "No users yet."


class ApiTokenTable(tables.Table):
    prefix = tables.Column(verbose_name="Key starts")
    user = tables.Column(accessor="user__username", verbose_name="User")
    expires_at = TimeColumn(verbose_name="Expires")
    last_used_at = TimeColumn(verbose_name="Last used")
    state = tables.TemplateColumn(
        "{% if record.is_active %}active{% elif record.revoked_at %}revoked{% else %}expired{% endif %}",
        orderable=False,
    )
    actions = tables.TemplateColumn(
        template_name="accounts/_token_actions.html", orderable=False, verbose_name=""
    )

    class Meta:
        model = ApiToken
        fields = ("name", "prefix", "user", "expires_at", "last_used_at", "state", "actions")
        empty_text = "No API tokens. Create one for a script that uses the REST API."
