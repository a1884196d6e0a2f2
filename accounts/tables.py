import django_tables2 as tables

from accounts.models import ApiToken, User


class UserTable(tables.Table):
    username = tables.Column(linkify=("accounts:user", {"pk": tables.A("pk")}))
    last_login = tables.TemplateColumn("{% load fleet_ui %}{{ value|at }}")

    class Meta:
        model = User
        fields = ("username", "email", "role", "is_active", "last_login")
        empty_text = "No users yet."


class ApiTokenTable(tables.Table):
    prefix = tables.Column(verbose_name="Key starts")
    user = tables.Column(accessor="user__username")
    expires_at = tables.TemplateColumn("{% load fleet_ui %}{{ value|at }}")
    last_used_at = tables.TemplateColumn("{% load fleet_ui %}{{ value|at }}")
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
