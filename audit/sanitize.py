"""Turn any audit row into one the database will store: every value bounded and typed.

An audit row is a billing row, so the database refusing one must not depend on what a
client sent or an upstream reported. Postgres refuses NUL characters in text and in JSON
strings, text longer than a column's max_length, integers outside a column's range, and
orjson (which encodes the JSON columns) refuses nesting past 254 levels, integers past
64 bits and lone surrogates. `sanitize_row` fixes each of these and says so in the row's
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

SANITIZED_KEY = "audit_sanitized"  # the metadata key that records what was changed
# Past this depth a JSON value is replaced by DEPTH_MARKER. orjson cannot encode more than
# 254 levels and no chat payload needs more than a handful; only values that fail the
# fast checks are walked, so a value between these two depths is stored as it is.
MAX_JSON_DEPTH = 64
# Items kept per JSON list or object once a value is walked (a value too large to store
# whole): the rest are replaced by one marker saying how many were left out.
MAX_JSON_ITEMS = 10_000
DEPTH_MARKER = "[truncated: nested too deep]"
NUL_REPLACEMENT = "\ufffd"  # what a NUL becomes: visible in the text, storable everywhere
_INT64 = (-(2**63), 2**63 - 1)
_NUL_JSON = b"\\u0000"


class EncodedJson:
    """A JSON column's value, encoded once: the COPY sends these bytes as they are, and the
    spool and dead-letter lines embed them (as an orjson.Fragment) without encoding the
    value again."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def value(self) -> Any:
        return orjson.loads(self.data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncodedJson) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        return f"EncodedJson({self.data[:200]!r})"


def truncation_marker(original_length: int) -> str:
    return f"[truncated: {original_length} chars]"


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
                self.integers.append((field.attname, *_INT64, field.null))
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


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return str(value)
    except Exception:
        return "[unprintable]"


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
            number = int(value)  # type: ignore[call-overload]
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


class _Walk:
    """Rebuild a JSON value within the bounds (depth, items, string length, NUL, types)."""

    def __init__(self, text_max: int) -> None:
        self.text_max = text_max
        self.changes: dict[str, int] = {}

    def note(self, what: str) -> None:
        self.changes[what] = self.changes.get(what, 0) + 1

    def string(self, text: str) -> str:
        if "\x00" in text:
            self.note("nul")
            text = text.replace("\x00", NUL_REPLACEMENT)
        try:
            text.encode()
        except UnicodeEncodeError:
            self.note("invalid_unicode")
            text = text.encode("utf-8", "replace").decode()
        if len(text) > self.text_max:
            self.note("long_strings")
            text = text[: self.text_max] + truncation_marker(len(text))
        return text

    def value(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, int):
            if _INT64[0] <= value <= _INT64[1]:
                return value
            self.note("big_integers")
            return str(value)
        if isinstance(value, dict | list | tuple):
            if depth >= MAX_JSON_DEPTH:
                self.note("too_deep")
                return DEPTH_MARKER
            return self.container(value, depth + 1)
        if isinstance(value, Decimal | datetime):
            return str(value)
        self.note("other_types")
        return self.string(_text(value))

    def container(self, value: dict | list | tuple, depth: int) -> Any:
        if isinstance(value, dict):
            out = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= MAX_JSON_ITEMS:
                    self.note("too_many_items")
                    out["[truncated]"] = f"[truncated: {len(value) - index} more items]"
                    break
                out[self.string(_text(key))] = self.value(item, depth)
            return out
        items = []
        for index, item in enumerate(value):
            if index >= MAX_JSON_ITEMS:
                self.note("too_many_items")
                items.append(f"[truncated: {len(value) - index} more items]")
                break
            items.append(self.value(item, depth))
        return items


def _json_default(value: object) -> object:
    # Decimal and datetime ride in metadata; stored as text rather than refused.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, EncodedJson):
        return orjson.Fragment(value.data)
    raise TypeError


def _clean_json(value: Any, notes: dict, name: str) -> EncodedJson:
    """The value checked and encoded once."""
    text_max = settings.AUDIT_MAX_TEXT_CHARS
    if isinstance(value, EncodedJson):
        return value  # already cleaned (a row sanitized twice)
    try:
        encoded = orjson.dumps(value, default=_json_default)
    except TypeError:  # orjson.JSONEncodeError: too deep, a 65-bit int, a surrogate, ...
        encoded = None
    # Rows are bounded by the request body limit anyway; a value larger than one text
    # column is walked so that its strings are too.
    if encoded is not None and _NUL_JSON not in encoded and len(encoded) <= text_max:
        return EncodedJson(encoded)
    walk = _Walk(text_max)
    cleaned = walk.value(value, 0)
    if walk.changes:
        notes[name] = walk.changes
    try:
        return EncodedJson(orjson.dumps(cleaned))
    except Exception:  # cannot happen for a walked value; never lose the row for it
        notes[name] = {"unencodable": True}
        return EncodedJson(orjson.dumps(DEPTH_MARKER))


def _clean_created_at(value: object, notes: dict) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        notes["created_at"] = {"raw": _text(value)[:100]}
        return datetime.now(UTC)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _clean_cost(value: object, notes: dict) -> Decimal:
    layout = _layout()
    try:
        cost = value if isinstance(value, Decimal) else Decimal(_text(value) or "0")
        if not cost.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError, TypeError):
        notes["cost_usd"] = {"raw": _text(value)[:100]}
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
            encoded = orjson.dumps(value, default=_json_default)
        except TypeError:
            return None
        if _NUL_JSON in encoded or len(encoded) > layout.text_max:
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
    unknown = [name for name in fields if name not in layout.names]
    for name in unknown:
        value = fields.pop(name)
        # Underscored keys are the writer's own markers (`_unsure`, `_dead_letter`); any
        # other stray key would make the INSERT raise: keep its value visible instead.
        if not (isinstance(name, str) and name.startswith("_")):
            notes.setdefault("unknown_fields", {})[_text(name)[:100]] = _text(value)[:200]
    for name, limit in layout.texts:
        value = fields.get(name)
        if value is None and name not in fields:
            continue
        text = value if value.__class__ is str else _text(value)
        if thorough or len(text) > limit or "\x00" in text:
            text = _clean_text(text, limit, notes, name, thorough)
        fields[name] = text
    for name, lowest, highest, null in layout.integers:
        if name in fields:
            number, changed = _clean_int(fields[name], lowest, highest, null)
            if changed:
                notes[name] = {"raw": _text(fields[name])[:100]}
            fields[name] = number
    for name in layout.booleans:
        if name in fields and not isinstance(fields[name], bool):
            fields[name] = bool(fields[name])
    fields["created_at"] = _clean_created_at(fields.get("created_at"), notes)
    if "cost_usd" in fields:
        fields["cost_usd"] = _clean_cost(fields["cost_usd"], notes)
    if notes:
        metadata = fields.get("metadata")
        if isinstance(metadata, EncodedJson):
            metadata = metadata.value()
        if not isinstance(metadata, dict):
            metadata = {"value": metadata} if metadata is not None else {}
        previous = metadata.get(SANITIZED_KEY)
        fields["metadata"] = {
            **metadata,
            SANITIZED_KEY: {**previous, **notes} if isinstance(previous, dict) else notes,
        }
    json_notes: dict[str, Any] = {}
    for name, default in layout.jsons:
        if name in fields:
            value = fields[name]
            fields[name] = _clean_json(default() if value is None else value, json_notes, name)
    if json_notes:
        # Found while encoding: add them to the metadata already encoded.
        metadata = fields["metadata"].value() if "metadata" in fields else {}
        if not isinstance(metadata, dict):
            metadata = {"value": metadata}
        previous = metadata.get(SANITIZED_KEY)
        metadata[SANITIZED_KEY] = (
            {**previous, **json_notes} if isinstance(previous, dict) else json_notes
        )
        fields["metadata"] = _clean_json(metadata, {}, "metadata")
    return fields


def row_to_json(fields: dict) -> bytes:
    """One spool or dead-letter line for `fields` (a sanitized row). Never raises."""
    try:
        return orjson.dumps(fields, default=_json_default)
    except Exception:
        safe = {_text(key): _text(value)[:100_000] for key, value in fields.items()}
        return orjson.dumps(safe, default=str)
