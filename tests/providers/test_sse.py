"""The incremental SSE reader, fed byte chunks split in awkward places."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from providers.sse import iter_events


async def events(*chunks: bytes) -> list[tuple[str, bytes]]:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    response = httpx.Response(200, content=body())
    return [event async for event in iter_events(response)]


async def test_it_reads_data_only_events():
    assert await events(b'data: {"a":1}\n\ndata: [DONE]\n\n') == [
        ("message", b'{"a":1}'),
        ("message", b"[DONE]"),
    ]


async def test_it_reads_named_events():
    raw = b'event: message_start\ndata: {"type":"message_start"}\n\nevent: ping\ndata: {}\n\n'

    assert await events(raw) == [("message_start", b'{"type":"message_start"}'), ("ping", b"{}")]


async def test_it_survives_chunks_split_anywhere():
    raw = b'event: delta\r\ndata: {"text": "h\xc3\xa9"}\r\n\r\ndata: x\r\n\r\n'

    for size in (1, 2, 3, 5, 7):
        chunks = [raw[i : i + size] for i in range(0, len(raw), size)]
        assert await events(*chunks) == [("delta", '{"text": "hé"}'.encode()), ("message", b"x")]


async def test_it_accepts_crlf_and_lone_cr_line_endings():
    assert await events(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n") == [
        ("message", b"a"),
        ("message", b"b"),
        ("message", b"c"),
    ]


async def test_it_skips_comments_ids_and_retries():
    raw = b": keepalive\n\nid: 3\nretry: 10\n: note\ndata: x\n\n"

    assert await events(raw) == [("message", b"x")]


async def test_it_joins_multi_line_data():
    assert await events(b"data: one\ndata:two\ndata:  three\n\n") == [
        ("message", b"one\ntwo\n three")
    ]


async def test_it_does_not_split_on_unicode_line_separators():
    raw = 'data: {"t": "a\u2028b\u0085c"}\n\n'.encode()

    assert await events(raw) == [("message", '{"t": "a\u2028b\u0085c"}'.encode())]


async def test_it_delivers_a_last_event_without_a_blank_line():
    assert await events(b"data: one\n\ndata: [DONE]") == [
        ("message", b"one"),
        ("message", b"[DONE]"),
    ]


async def test_an_event_name_does_not_leak_into_the_next_event():
    assert await events(b"event: a\ndata: 1\n\ndata: 2\n\n") == [("a", b"1"), ("message", b"2")]
