"""`manage.py token_create USERNAME --name NAME`: an API token for a user, without the web UI or the admin.

For the first token of an automation account on a new deployment; the key is printed once.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.services import AccountError, token_create
from fleet.audit import Actor


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What the token is for, e.g. 'ci deploy script'.")
        parser.add_argument(
            "--expires-days", type=int, default=None, help="0: never (default: API_TOKEN_DEFAULT_DAYS)."
        )

    def handle(self, *args, username: str, name: str, expires_days: int | None, **options):
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {username!r}")
        try:
            issued = token_create(
                actor=Actor.system("manage.py token_create"),
                user=user,
                name=name,
                expires_in_days=expires_days,
            )
        except AccountError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(
            f"token {issued.token.prefix}… for {user.username} ({user.effective_role}); shown once:"
        )
        self.stdout.write(issued.key)
