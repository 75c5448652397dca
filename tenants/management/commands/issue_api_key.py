"""manage.py issue_api_key --tenant SLUG --name NAME [--allow-route R ...] [--expires-days N]

Prints only the key on stdout, so `KEY=$(manage.py issue_api_key ...)` works; anything
else (warnings, errors) goes to stderr.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from gateway_project.lib.actor import ActorCommand
from tenants.models import Tenant
from tenants.route_names import route_names_visible_to
from tenants.selectors import tenant_get
from tenants.services import api_key_issue


class Command(ActorCommand):  # its configuration changes are recorded as its own
    help = (
        "Issue an API key for a tenant and print it. The key is shown this once: only "
        "its hash is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument("--name", required=True, help="What the key is for.")
        parser.add_argument(
            "--allow-route",
            dest="allowed_routes",
            action="extend",
            nargs="+",
            default=[],
            metavar="ROUTE",
            help="Restrict the key to these routes (repeatable). Default: every route.",
        )
        parser.add_argument("--expires-days", type=int, metavar="N")

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["tenant"]
        try:
            tenant = tenant_get(slug=slug)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with slug {slug!r}.") from None
        days = options["expires_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-days must be a positive number of days.")
        allowed = list(dict.fromkeys(options["allowed_routes"]))  # dedupe, keep order
        unknown = sorted(set(allowed) - route_names_visible_to(tenant=tenant))
        if unknown:
            # Allowed, since the route may be created later, but usually a typo.
            self.stderr.write(f"warning: no route named {', '.join(unknown)} for {slug} yet")
        if not tenant.is_active:
            self.stderr.write(f"warning: tenant {slug} is {tenant.status}; its keys are refused")
        issued = api_key_issue(
            tenant=tenant,
            name=options["name"],
            allowed_routes=allowed,
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        self.stdout.write(issued.plaintext)
