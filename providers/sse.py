"""An incremental Server-Sent Events reader over a streaming httpx response.

It works on bytes and splits lines with `bytes.splitlines`, which only knows the three
SSE line endings (`\\n`, `\\r\\n`, `\\r`). httpx's `aiter_lines()` decodes to str first
and then also splits on U+2028, U+0085 and friends, which JSON may carry unescaped, so
it could cut a chunk in half. Data is handed back as bytes because `orjson.loads` takes
bytes directly: no decode per event on the hot path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

DEFAULT_EVENT = "message"


async def iter_events(response: httpx.Response) -> AsyncIterator[tuple[str, bytes]]:
    """Yield `(event, data)` for each event as soon as its terminating blank line arrives.

    `event` is the `event:` field, or "message" when there was none; `data` joins
    multi-line data fields with `\\n`. Comments (keepalives such as `: ping`) and the
    `id:`/`retry:` fields are skipped: nothing here reconnects. A last event that the
    server did not terminate with a blank line is still delivered at end of stream, so a
    final `data: [DONE]` is never lost to a sloppy server.
    """
    pending = b""
    event = ""
    data: list[bytes] = []
    async for chunk in response.aiter_bytes():
        if not chunk:
            continue
        if pending:
            chunk = pending + chunk
        lines = chunk.splitlines(keepends=True)
        # An unfinished last line, or one ending in a lone \r whose \n may come in the
        # next read, is held back rather than misreading \r\n as two line breaks.
        pending = b"" if lines[-1].endswith(b"\n") else lines.pop()
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line:
                if data:
                    yield event or DEFAULT_EVENT, data[0] if len(data) == 1 else b"\n".join(data)
                    data = []
                event = ""
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode("utf-8", "replace")
            # Anything else is a comment (":" first), id, retry or an unknown field.
    line = pending.rstrip(b"\r\n")
    if line.startswith(b"data:"):
        value = line[5:]
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield event or DEFAULT_EVENT, b"\n".join(data)
