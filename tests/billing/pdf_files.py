"""Reading back the text of the PDFs billing draws (billing/statement_pdf.py), for the
tests."""

from __future__ import annotations

import re
import zlib


def pdf_text(content: bytes) -> str:
    """The text drawn in a PDF's (deflated) content streams."""
    streams = re.findall(rb"stream\r?\n(.*?)\r?\nendstream", content, re.S)
    text = b""
    for stream in streams:
        try:
            text += zlib.decompress(stream)
        except zlib.error:
            text += stream
    shown = b" ".join(re.findall(rb"\(((?:\\.|[^\\)])*)\)\s*Tj", text))
    return re.sub(rb"\\(.)", rb"\1", shown).decode("latin-1")
