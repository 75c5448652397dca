"""Audit rows kept on local disk: the spool (rows waiting for the database) and the dead
letters (rows the database refused).

Both hold rows already redacted and sanitized (audit.store.prepare), one JSON object a
line: the AuditEvent column values by attname, plus the writer's own `_`-prefixed markers
(`_dead_letter`). The format has not changed since the rows were dicts, so files left by
any earlier version replay as they are; sanitizing repairs what a line may lack or hold
extra. Under settings.STATE_DIR:

- `audit-spool/<ns>-<pid>-<seq>-<rows>.jsonl`: one file per spill (a shutdown during a
  database outage, or a queue past AUDIT_QUEUE_MAX). Written to a temporary name, fsync'd,
  renamed into place, and the directory fsync'd: a file either holds all its rows or does
  not exist. The row count is in the name, so counting what waits needs no reads. A file
  is replayed under an exclusive `flock`, so two workers sharing the directory never
  replay the same file together, and deleted only once its rows are committed.
- `audit-dead-letter.jsonl`: appended under `flock` (several workers share it), fsync'd.
  A replay renames it away first (`audit-dead-letter.replaying-*.jsonl`), so rows
  refused again during the replay go to a fresh file instead of being lost in a rewrite.

Replaying either is safe to repeat: the writer skips a row whose request_id is already in
the database (request ids are ours and unique per request).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from django.conf import settings

from audit.json_columns import row_to_json

logger = logging.getLogger(__name__)
_SEQUENCE = itertools.count()
DEAD_LETTER_NAME = "audit-dead-letter.jsonl"
_REPLAYING_GLOB = "audit-dead-letter.replaying-*.jsonl"


def spool_dir() -> Path:
    return Path(settings.STATE_DIR) / "audit-spool"


def dead_letter_path() -> Path:
    return Path(settings.STATE_DIR) / DEAD_LETTER_NAME


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the spool -------------------------------------------------------------------------------


def spill(rows: list[dict]) -> Path:
    """Write `rows` (sanitized) to a new spool file, durably; OSError if the disk refuses."""
    directory = spool_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{next(_SEQUENCE)}-{len(rows)}.jsonl"
    final = directory / name
    temporary = directory / f".{name}.tmp"
    with temporary.open("wb") as handle:
        handle.write(b"".join(row_to_json(row) + b"\n" for row in rows))
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temporary, final)
    _fsync_dir(directory)
    return final


def spool_files() -> list[Path]:
    """Spool files, oldest first (names start with the time they were written)."""
    try:
        return sorted(path for path in spool_dir().glob("*.jsonl"))
    except OSError:
        return []


def rows_in_name(path: Path) -> int:
    try:
        return int(path.stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def spooled_row_count() -> int:
    return sum(rows_in_name(path) for path in spool_files())


@dataclass
class Lines:
    """What a file holds: rows parsed, and lines that could not be (kept, never dropped)."""

    rows: list[dict]
    unreadable: list[bytes]


def read_lines(data: bytes) -> Lines:
    rows: list[dict] = []
    unreadable: list[bytes] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            unreadable.append(line)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            unreadable.append(line)
    return Lines(rows, unreadable)


def _same_file(handle: int, path: Path) -> bool:
    """Whether `path` still names the open file (not renamed or deleted meanwhile)."""
    try:
        return os.stat(path).st_ino == os.fstat(handle).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def claimed(path: Path) -> Iterator[int | None]:
    """Hold `path` exclusively (yields its file descriptor), or yield None when another
    process holds it or has already replayed it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd if _same_file(fd, path) else None
    finally:
        os.close(fd)  # releases the lock


def read_claimed(fd: int) -> Lines:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return read_lines(b"".join(chunks))


def remove(path: Path) -> None:
    """Delete a replayed file (its rows are committed), durably."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    _fsync_dir(path.parent)


# --- dead letters ----------------------------------------------------------------------------


def dead_letter_append(rows: list[dict], *, error: str = "") -> None:
    """Append refused rows to the dead-letter file, durably; OSError if the disk refuses."""
    when = datetime.now(UTC).isoformat()
    lines = b"".join(
        row_to_json({**row, "_dead_letter": {"at": when, "error": error[:500]}}) + b"\n"
        for row in rows
    )
    dead_letter_append_lines(lines)


def dead_letter_append_lines(lines: bytes) -> None:
    path = dead_letter_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        with path.open("ab") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            if not _same_file(handle.fileno(), path):
                continue  # a replay renamed the file away while we waited: use the new one
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
            return


def dead_letter_claim() -> list[Path]:
    """Move the dead-letter file aside for a replay; the files to replay (this one and any
    an interrupted replay left)."""
    path = dead_letter_path()
    if path.exists():
        with path.open("ab") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            if _same_file(handle.fileno(), path):
                aside = path.with_name(
                    f"audit-dead-letter.replaying-{time.time_ns():020d}-{os.getpid()}.jsonl"
                )
                os.rename(path, aside)
                _fsync_dir(path.parent)
    return sorted(path.parent.glob(_REPLAYING_GLOB))


_count_cache: dict[Path, tuple[tuple[int, int], int]] = {}


def _line_count(path: Path) -> int:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    key = (stat.st_size, stat.st_mtime_ns)
    cached = _count_cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    _count_cache[path] = (key, count)
    return count


def dead_letter_count() -> int:
    """Rows in the dead-letter file(s); read again only when a file changed."""
    path = dead_letter_path()
    return _line_count(path) + sum(
        _line_count(aside) for aside in path.parent.glob(_REPLAYING_GLOB)
    )


def dead_letter_rows(*, limit: int = 100) -> list[dict]:
    """The first `limit` dead-lettered rows (for the admin), unreadable lines as text."""
    path = dead_letter_path()
    rows: list[dict] = []
    for source in [*sorted(path.parent.glob(_REPLAYING_GLOB)), path]:
        try:
            handle = source.open("rb")
        except FileNotFoundError:
            continue
        with handle:
            for line in handle:
                if len(rows) >= limit:
                    return rows
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    row = {"unreadable": line[:500].decode(errors="replace")}
                rows.append(row if isinstance(row, dict) else {"unreadable": str(row)[:500]})
    return rows
