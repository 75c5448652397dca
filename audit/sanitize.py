"""Turn any audit row into one the database will store: every value bounded and typed.

An audit row is a billing row, so the database refusing one must not depend on what a
client sent or an upstream reported. Postgres refuses NUL characters in text and in JSON
strings, text longer than a column's max_length, integers outside a column's range, and
orjson (which encodes the JSON columns) refuses nesting past 254 levels, integers past
64 bits and lone surrogates (audit/json_columns.py handles those). `sanitize_row` fixes each of these and says so in the row's
metadata under `audit_sanitized` (the field, and what was changed: the NUL count, the
original length, the raw number), so a clipped or clamped value is visible, not silent.

The common row needs none of it, and the writer runs this for every row on a thread that
shares the GIL with the proxy, so the checks are the cheap ones C does for us (`in`,
`len`, one orjson encode per JSON column, whose result the COPY reuses as an
`EncodedJson`); only a value that fails them is walked in Python.

Nothing here raises: a value that cannot even be turned into text becomes a marker.
"""

from __future__ import annotations

import functools
import operator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from django.conf import settings
from django.db import models
from django.utils.dateparse import parse_datetime

from audit.json_columns import (
    INT64,
    NUL_JSON,
    NUL_REPLACEMENT,
    EncodedJson,
    clean_json,
    json_default,
    text_of,
    truncation_marker,
)

SANITIZED_KEY = "audit_sanitized"  # the metadata key that records what was changed


class _Layout:
    """What each AuditEvent column accepts (built once, from the model)."""

    def __init__(self) -> None:
        from audit.models import AuditEvent

        self.texts: list[tuple[str, int]] = []  # (attname, max chars)
        self.integers: list[tuple[str, int, int, bool]] = []  # (attname, min, max, null)
        self.booleans: list[str] = []
        self.jsons: list[tuple[str, Any]] = []  # (attname, default factory)
        self.names: set[str] = set()
        text_max = settings.AUDIT_MAX_TEXT_CHARS
        for field in AuditEvent._meta.concrete_fields:
            if field.primary_key:
                continue
            self.names.add(field.attname)
            if isinstance(field, models.JSONField):
                self.jsons.append((field.attname, field.default))
            elif isinstance(field, models.BooleanField):
                self.booleans.append(field.attname)
            elif isinstance(field, models.CharField):
                self.texts.append((field.attname, field.max_length or text_max))
            elif isinstance(field, models.TextField):
                self.texts.append((field.attname, text_max))
            elif isinstance(field, models.ForeignKey | models.BigIntegerField):
                self.integers.append((field.attname, *INT64, field.null))
            elif isinstance(field, models.PositiveSmallIntegerField):
                self.integers.append((field.attname, 0, 32767, field.null))
            elif isinstance(field, models.PositiveIntegerField):
                self.integers.append((field.attname, 0, 2147483647, field.null))
        cost = AuditEvent._meta.get_field("cost_usd")
        self.cost_places = Decimal(1).scaleb(-cost.decimal_places)
        self.cost_max = Decimal(10) ** (cost.max_digits - cost.decimal_places) - self.cost_places
        # For the fast check: each column's values picked in one C call.
        self.text_values = operator.itemgetter(*(name for name, _ in self.texts))
        self.text_limits = [limit for _, limit in self.texts]
        self.integer_values = operator.itemgetter(*(spec[0] for spec in self.integers))
        self.integer_ranges = [spec[1:] for spec in self.integers]
        self.json_names = [name for name, _ in self.jsons]
        self.text_max = text_max


@functools.cache
def _layout() -> _Layout:
    return _Layout()


def _clean_text(text: str, limit: int, notes: dict, name: str, thorough: bool) -> str:
    note: dict[str, Any] = {}
    if "\x00" in text:
        note["nul"] = text.count("\x00")
        text = text.replace("\x00", NUL_REPLACEMENT)
    if thorough:
        try:
            text.encode()
        except UnicodeEncodeError:
            note["invalid_unicode"] = True
            text = text.encode("utf-8", "replace").decode()
    if len(text) > limit:
        note["length"] = len(text)
        marker = truncation_marker(len(text))
        text = text[: max(limit - len(marker), 0)] + marker[:limit]
    if note:
        notes[name] = note
    return text


def _clean_int(value: object, lowest: int, highest: int, null: bool) -> tuple[int | None, bool]:
    """The value as an int in range, and whether it had to change."""
    if value is None and null:
        return None, False
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            number = int(value)  # type: ignore[call-overload]  # any type: the errors are caught
        except (TypeError, ValueError, OverflowError):
            return (None if null else 0), True
        changed = True
    else:
        number, changed = value, False
    if number < lowest:
        return lowest, True
    if number > highest:
        return highest, True
    return number, changed


def _clean_created_at(value: object, notes: dict) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        notes["created_at"] = {"raw": text_of(value)[:100]}
        return datetime.now(UTC)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _clean_cost(value: object, notes: dict) -> Decimal:
    layout = _layout()
    try:
        cost = value if isinstance(value, Decimal) else Decimal(text_of(value) or "0")
        if not cost.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError, TypeError):
        notes["cost_usd"] = {"raw": text_of(value)[:100]}
        return Decimal(0)
    if -layout.cost_max <= cost <= layout.cost_max:
        return cost.quantize(layout.cost_places)
    notes["cost_usd"] = {"raw": str(cost)[:100]}
    return layout.cost_max if cost > 0 else -layout.cost_max


def _already_clean(row: dict, layout: _Layout, *, copy: bool) -> dict | None:
    """The row, its JSON columns encoded, if it needs no change; else None. The common
    case, so every check is one the C code makes (a row the writer handles costs a few
    microseconds of the GIL here, shared with the proxy)."""
    if not row.keys() <= layout.names:
        return None
    try:
        texts = layout.text_values(row)
        integers = layout.integer_values(row)
        created_at = row["created_at"]
        cost = row["cost_usd"]
        jsons = [row[name] for name in layout.json_names]
    except KeyError:
        return None
    try:
        joined = "".join(texts)  # raises for a value that is not text
    except TypeError:
        return None
    if (
        "\x00" in joined
        or not all(map(operator.le, map(len, texts), layout.text_limits))
        or created_at.__class__ is not datetime
        or created_at.tzinfo is None
        or cost.__class__ is not Decimal
        or not (-layout.cost_max <= cost <= layout.cost_max)
    ):
        return None
    for value, (lowest, highest, null) in zip(integers, layout.integer_ranges, strict=True):
        if value.__class__ is int:
            if not lowest <= value <= highest:
                return None
        elif value is not None or not null:
            return None
    fields = dict(row) if copy else row
    for name, value in zip(layout.json_names, jsons, strict=True):
        try:
            encoded = orjson.dumps(value, default=json_default)
        except TypeError:
            return None
        if NUL_JSON in encoded or len(encoded) > layout.text_max:
            return None
        fields[name] = EncodedJson(encoded)
    fields["cost_usd"] = cost.quantize(layout.cost_places)
    return fields


def sanitize_row(row: dict, *, thorough: bool = False, copy: bool = True) -> dict:
    """A copy of `row` (AuditEvent values by attname, already redacted) that the database
    stores as it is. `thorough` also checks every text column's Unicode (a lone surrogate
    cannot be encoded): the writer asks for it only for a row that failed once. `copy=False`
    lets a caller that owns `row` have it changed in place when it is already clean."""
    layout = _layout()
    if not thorough:
        clean = _already_clean(row, layout, copy=copy)
        if clean is not None:
            return clean
    fields = dict(row)
    notes: dict[str, Any] = {}
    _drop_unknown(fields, layout, notes)
    _clean_columns(fields, layout, notes, thorough=thorough)
    if notes:
        metadata = fields.get("metadata")
        if isinstance(metadata, EncodedJson):
            metadata = metadata.value()
        fields["metadata"] = _noted(metadata, notes)
    json_notes: dict[str, Any] = {}
    for name, default in layout.jsons:
        if name in fields:
            value = fields[name]
            fields[name] = clean_json(default() if value is None else value, json_notes, name)
    if json_notes:
        # Found while encoding: add them to the metadata already encoded.
        metadata = fields["metadata"].value() if "metadata" in fields else {}
        fields["metadata"] = clean_json(_noted(metadata, json_notes), {}, "metadata")
    return fields


def _drop_unknown(fields: dict, layout: _Layout, notes: dict) -> None:
    for name in [name for name in fields if name not in layout.names]:
        value = fields.pop(name)
        # Underscored keys are the writer's own markers (`_unsure`, `_dead_letter`); any
        # other stray key would make the INSERT raise: keep its value visible instead.
        if not (isinstance(name, str) and name.startswith("_")):
            notes.setdefault("unknown_fields", {})[text_of(name)[:100]] = text_of(value)[:200]


def _clean_columns(fields: dict, layout: _Layout, notes: dict, *, thorough: bool) -> None:
    """Every column but the JSON ones, in place; what changed goes to `notes`."""
    for name, limit in layout.texts:
        value = fields.get(name)
        if value is None and name not in fields:
            continue
        text = value if value.__class__ is str else text_of(value)
        if thorough or len(text) > limit or "\x00" in text:
            text = _clean_text(text, limit, notes, name, thorough)
        fields[name] = text
    for name, lowest, highest, null in layout.integers:
        if name in fields:
            number, changed = _clean_int(fields[name], lowest, highest, null)
            if changed:
                notes[name] = {"raw": text_of(fields[name])[:100]}
            fields[name] = number
    for name in layout.booleans:
        if name in fields and not isinstance(fields[name], bool):
            fields[name] = bool(fields[name])
    fields["created_at"] = _clean_created_at(fields.get("created_at"), notes)
    if "cost_usd" in fields:
        fields["cost_usd"] = _clean_cost(fields["cost_usd"], notes)


def _noted(metadata: Any, notes: dict) -> dict:
    """The row's metadata (whatever it was) as a dict with `notes` added under SANITIZED_KEY."""
    if not isinstance(metadata, dict):
        metadata = {"value": metadata} if metadata is not None else {}
    previous = metadata.get(SANITIZED_KEY)
    return {
        **metadata,
        SANITIZED_KEY: {**previous, **notes} if isinstance(previous, dict) else notes,
    }
