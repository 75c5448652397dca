"""The JSON columns of an audit row (prompt, attempt_log, metadata): checked, bounded and
encoded once.

orjson refuses nesting past 254 levels, integers past 64 bits and lone surrogates, and
Postgres refuses NUL in JSON strings; a value that fails the one fast encode is rebuilt
within bounds (`_Walk`), and what changed is reported for the row's `audit_sanitized`
notes. The encoded bytes travel as `EncodedJson`: COPY sends them as they are, and spool
and dead-letter lines embed them. Nothing here raises.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings

# Past this depth a JSON value is replaced by DEPTH_MARKER. orjson cannot encode more than
# 254 levels and no chat payload needs more than a handful; only values that fail the
# fast checks are walked, so a value between these two depths is stored as it is.
MAX_JSON_DEPTH = 64
# Items kept per JSON list or object once a value is walked (a value too large to store
# whole): the rest are replaced by one marker saying how many were left out.
MAX_JSON_ITEMS = 10_000
DEPTH_MARKER = "[truncated: nested too deep]"
NUL_REPLACEMENT = "\ufffd"  # what a NUL becomes: visible in the text, storable everywhere
INT64 = (-(2**63), 2**63 - 1)
NUL_JSON = b"\\u0000"


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


def text_of(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return str(value)
    except Exception:
        return "[unprintable]"


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
            if INT64[0] <= value <= INT64[1]:
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
        return self.string(text_of(value))

    def container(self, value: dict | list | tuple, depth: int) -> Any:
        if isinstance(value, dict):
            out = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= MAX_JSON_ITEMS:
                    self.note("too_many_items")
                    out["[truncated]"] = f"[truncated: {len(value) - index} more items]"
                    break
                out[self.string(text_of(key))] = self.value(item, depth)
            return out
        items = []
        for index, item in enumerate(value):
            if index >= MAX_JSON_ITEMS:
                self.note("too_many_items")
                items.append(f"[truncated: {len(value) - index} more items]")
                break
            items.append(self.value(item, depth))
        return items


def json_default(value: object) -> object:
    # Decimal and datetime ride in metadata; stored as text rather than refused.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, EncodedJson):
        return orjson.Fragment(value.data)
    raise TypeError


def clean_json(value: Any, notes: dict, name: str) -> EncodedJson:
    """The value checked and encoded once."""
    text_max = settings.AUDIT_MAX_TEXT_CHARS
    if isinstance(value, EncodedJson):
        return value  # already cleaned (a row sanitized twice)
    try:
        encoded = orjson.dumps(value, default=json_default)
    except TypeError:  # orjson.JSONEncodeError: too deep, a 65-bit int, a surrogate, ...
        encoded = None
    # Rows are bounded by the request body limit anyway; a value larger than one text
    # column is walked so that its strings are too.
    if encoded is not None and NUL_JSON not in encoded and len(encoded) <= text_max:
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


def row_to_json(fields: dict) -> bytes:
    """One spool or dead-letter line for `fields` (a sanitized row). Never raises."""
    try:
        return orjson.dumps(fields, default=json_default)
    except Exception:
        safe = {text_of(key): text_of(value)[:100_000] for key, value in fields.items()}
        return orjson.dumps(safe, default=str)
