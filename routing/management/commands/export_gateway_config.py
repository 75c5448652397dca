"""manage.py export_gateway_config [-o FILE]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from routing.config_io import config_dump, config_export


class Command(BaseCommand):
    help = (
        "Write the gateway configuration as YAML (stdout by default), in the format "
        "import_gateway_config reads. Keys' settings are, by prefix; no key, key hash "
        "or secret ever is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", help="Write to this file instead of stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        text = config_dump(config_export())
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {options['output']}")
        else:
            self.stdout.write(text, ending="")
