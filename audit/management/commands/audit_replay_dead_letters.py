"""Insert dead-lettered (and spooled) audit rows into the database, exactly once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.services import audit_dead_letters_replay, audit_spool_replay


class Command(BaseCommand):
    help = (
        "Re-insert the rows in STATE_DIR/audit-dead-letter.jsonl (sanitized again; a row "
        "whose request_id is already in the database is skipped), removing those written "
        "and keeping those still refused. Also writes the spool files (rows a shutdown or "
        "a full queue left on disk) unless --no-spool. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-spool", action="store_true", help="Replay the dead letters only.")

    def handle(self, *args: Any, **options: Any) -> None:
        dead = audit_dead_letters_replay()
        self.stdout.write(f"dead letters: {dead}")
        failed = dead.still_failing + dead.kept_for_outage
        if not options["no_spool"]:
            spooled = audit_spool_replay()
            self.stdout.write(f"spool: {spooled}")
            failed += spooled.kept_for_outage
        if failed:
            self.stderr.write(self.style.WARNING(f"{failed} row(s) still not in the database"))
