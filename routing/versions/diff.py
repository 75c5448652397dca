"""Comparing two configuration documents: entry by entry for a summary, line by line for
the admin's diff page."""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The document's lists of named entries: what a person calls each, and its name.
_ENTRIES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "providers": ("provider", lambda entry: str(entry.get("name"))),
    "tenants": ("tenant", lambda entry: str(entry.get("slug"))),
    "routes": (
        "route",
        lambda entry: f"{entry.get('name')} ({entry.get('tenant') or 'global'})",
    ),
    "redaction_rules": ("redaction rule", lambda entry: str(entry.get("name"))),
}


def _named(document: Any, section: str) -> dict[str, dict[str, Any]]:
    items = document.get(section) if isinstance(document, dict) else None
    _, name = _ENTRIES[section]
    return {name(item): item for item in items or () if isinstance(item, dict)}


def document_changes(before: Any, after: Any) -> list[str]:
    """What differs from `before` to `after` (two parsed documents), one line per entry:
    "route chat (global): strategy, targets changed", "tenant acme added"."""
    lines = []
    for section, (noun, _) in _ENTRIES.items():
        old, new = _named(before, section), _named(after, section)
        for name in sorted(old.keys() | new.keys()):
            a, b = old.get(name), new.get(name)
            if a == b:
                continue
            if a is None:
                lines.append(f"{noun} {name} added")
            elif b is None:
                lines.append(f"{noun} {name} removed")
            else:
                fields = sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))
                lines.append(f"{noun} {name}: {', '.join(fields)} changed")
    old_limits = before.get("rate_limits") if isinstance(before, dict) else None
    new_limits = after.get("rate_limits") if isinstance(after, dict) else None
    if old_limits != new_limits:
        lines.append("global rate limits changed")
    return lines


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "hunk", "add", "remove" or "same"
    text: str
    old_number: int | None = None
    new_number: int | None = None


@dataclass(frozen=True)
class Diff:
    lines: list[DiffLine]
    added: int
    removed: int

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed)


def _hunk_start(header: str, sign: str) -> int:
    # "@@ -12,7 +12,8 @@": the number after `sign`; difflib counts from 1 (0 when empty).
    part = next(word for word in header.split() if word.startswith(sign))
    return int(part[1:].split(",")[0])


def text_diff(old: str, new: str, *, context: int = 3) -> Diff:
    """A unified diff of two documents, with the line numbers of each side."""
    lines: list[DiffLine] = []
    added = removed = 0
    old_number = new_number = 0
    raws = difflib.unified_diff(old.splitlines(), new.splitlines(), n=context, lineterm="")
    for raw in itertools.islice(raws, 2, None):  # past the "---" and "+++" file headers
        if raw.startswith("@@"):
            old_number, new_number = _hunk_start(raw, "-"), _hunk_start(raw, "+")
            lines.append(DiffLine("hunk", raw))
        elif raw.startswith("+"):
            added += 1
            lines.append(DiffLine("add", raw[1:], None, new_number))
            new_number += 1
        elif raw.startswith("-"):
            removed += 1
            lines.append(DiffLine("remove", raw[1:], old_number, None))
            old_number += 1
        else:
            lines.append(DiffLine("same", raw[1:], old_number, new_number))
            old_number += 1
            new_number += 1
    return Diff(lines, added, removed)
