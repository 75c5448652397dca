"""The free text of an audit row: which columns hold it, and redacting or withholding it.

Every column of AuditEvent that can hold what a client wrote, or what an upstream wrote
back, is redacted before the row is stored (audit.redaction applies the rules); when that
cannot be done (redaction failed, or the rules in force are unknown) the text is withheld:
replaced by a marker, never stored as it came.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from audit.payloads import Redact, gather_item, walk

logger = logging.getLogger(__name__)

# Every column of AuditEvent that can hold what a client wrote, or what an upstream wrote
# back (its error messages often quote the prompt). The others are the gateway's own:
# ids, the tenant slug, the key's public prefix, configured provider and model names.
AUDIT_TEXT_FIELDS = ("route", "requested_model", "error_type", "error_message", "response")
# JSON columns: every string in them. Metadata keys too: tag names are the client's.
AUDIT_JSON_FIELDS = ("prompt", "attempt_log", "metadata")
WITHHELD = "[redaction failed: withheld]"


@functools.cache
def _column_lengths() -> dict[str, int]:
    """max_length of the text columns: a replacement longer than what it hides must not
    push a row past what the database accepts."""
    from audit.models import AuditEvent

    lengths = {}
    for name in AUDIT_TEXT_FIELDS:
        length = getattr(AuditEvent._meta.get_field(name), "max_length", None)
        if length:
            lengths[name] = length
    return lengths


def _withheld(name: str, value: Any) -> Any:
    if name == "prompt":
        return [{"role": "system", "content": WITHHELD}]
    if name == "metadata":
        # The gateway's own flags (numbers, booleans) are kept; every text goes.
        kept = {
            key: item
            for key, item in (value.items() if isinstance(value, dict) else ())
            if isinstance(item, bool | int | float)
        }
        return {**kept, "redaction": "failed: withheld"}
    if name == "attempt_log":
        return [{"redaction": "failed: withheld"}] if value else []
    return WITHHELD[: _column_lengths().get(name, len(WITHHELD))] if value else value


def withhold(fields: dict) -> dict:
    """The row with every free-text field replaced by a marker (error codes are kept)."""
    for name in (*AUDIT_TEXT_FIELDS, *AUDIT_JSON_FIELDS):
        if name in fields and name != "error_type":
            fields[name] = _withheld(name, fields[name])
    return fields


def redact_fields(fields: dict, redact: Redact) -> dict:
    """`fields` (a row's columns) with `redact` applied to every free-text field, in place;
    a field whose redaction fails is withheld."""
    lengths = _column_lengths()
    for name in (*AUDIT_TEXT_FIELDS, *AUDIT_JSON_FIELDS):
        value = fields.get(name)
        if not value:
            continue
        try:
            if isinstance(value, str):
                value = redact(value)
                limit = lengths.get(name)
                fields[name] = value[:limit] if limit else value
            else:
                free_form = name != "prompt"  # the prompt is protocol; the rest is ours
                fields[name] = walk(value, redact, keys=name == "metadata", protocol=not free_form)
        except Exception:
            # Never store what could not be redacted.
            logger.exception("redaction of %s failed for %s", name, fields.get("request_id"))
            fields[name] = _withheld(name, value)
    return fields


def gather_texts(fields: dict, out: list[str]) -> None:
    """Append to `out` every text of `fields` that `redact_fields` would redact."""
    for name in AUDIT_TEXT_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and value:
            out.append(value)
    for name in AUDIT_JSON_FIELDS:
        gather_item(None, fields.get(name), out, protocol=name == "prompt")
