"""Reading back the XLSX files billing writes (with XlsxWriter), for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openpyxl


def xlsx_rows(path: Path, sheet: str | None = None) -> list[list[Any]]:
    """The rows of a sheet (the first one unless named), each cell's value as stored: a
    number, or text (the exact cost columns are text)."""
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = book[sheet] if sheet is not None else book.worksheets[0]
        return [list(row) for row in rows.values]
    finally:
        book.close()
