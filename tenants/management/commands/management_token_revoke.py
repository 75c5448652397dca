"""manage.py management_token_revoke --user NAME

Revokes every management API token of the user at once (they stop working on their next
request), e.g. when someone leaves or a token may have leaked.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.selectors import management_tokens_of
from tenants.services import management_tokens_revoke


class Command(BaseCommand):
    help = "Revoke every management API token of a user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, metavar="USERNAME")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["user"]
        try:
            user = get_user_model()._default_manager.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        revoked = management_tokens_revoke(tokens=management_tokens_of(user=user))
        self.stdout.write(f"Revoked {revoked} management token(s) of {username}.")
