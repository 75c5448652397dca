"""manage.py management_token_issue --user NAME [--days N] [--name WHAT]

Prints only the token on stdout, so `TOKEN=$(manage.py management_token_issue ...)` works;
it is shown this once (only its digest is stored). Send it as `Authorization: Token <token>`
to the management API (/api/v1/).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from tenants.services import management_token_issue

DEFAULT_DAYS = 90


class Command(BaseCommand):
    help = (
        "Issue a management API token for an active staff user and print it. It is shown "
        "this once: only its digest is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, metavar="USERNAME")
        parser.add_argument(
            "--days",
            type=int,
            default=DEFAULT_DAYS,
            metavar="N",
            help=f"Days until the token expires (default {DEFAULT_DAYS}).",
        )
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["user"]
        users = get_user_model()._default_manager
        try:
            user = users.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        days = options["days"]
        if days <= 0:
            raise CommandError("--days must be a positive number of days.")
        try:
            issued = management_token_issue(
                user=user,
                name=options["name"],
                expires_at=timezone.now() + timedelta(days=days),
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(issued.plaintext)
