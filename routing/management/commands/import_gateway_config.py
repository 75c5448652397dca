"""manage.py import_gateway_config FILE [--dry-run] [--prune]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from gateway_project.lib.actor import ActorCommand
from routing.config_io import ConfigError, config_import, config_load_file


class Command(ActorCommand):  # its configuration changes are recorded as its own
    help = (
        "Apply a declarative gateway configuration (YAML). Idempotent: applying the same "
        "file twice changes nothing. Rows the file does not mention are kept unless "
        "--prune is given. See docs/gateway.example.yaml."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path to the YAML file.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Validate and report what would change, then roll everything back.",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help=(
                "Make the file the whole truth: delete routes and redaction rules it does "
                "not list, limits of the tenants and routes it lists but gives none, and "
                "the settings of those tenants' keys it does not list. Providers, models, "
                "tenants and keys are never deleted."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        try:
            report = config_import(
                data=config_load_file(path),
                dry_run=options["dry_run"],
                prune=options["prune"],
                source=path,
            )
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        self.stdout.write(report.summary())
