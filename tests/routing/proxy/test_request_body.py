"""The /v1/ ASGI handler receives a body only when the view asks for it, in-process through
the production entry point (the one uvicorn runs)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from asgiref.sync import sync_to_async

from audit.models import AuditEvent
from audit.writer import audit_writer
from tests.personas import Personas

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def plaintext(personas: Personas) -> str:
    return personas.acme.plaintext_key


def scope(method: str, path: str, headers: dict[str, str]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"testserver")]
        + [(name.encode(), value.encode()) for name, value in headers.items()],
    }


async def call(the_scope: dict, messages: list[dict]) -> tuple[int, dict[str, str], int]:
    """Run one request; `messages` are what the client sends, then it waits (connected).
    Returns the status, the response headers and how many messages were received."""
    from gateway_project.asgi import application

    received = 0
    started: dict = {}

    async def receive() -> dict:
        nonlocal received
        if received < len(messages):
            received += 1
            return messages[received - 1]
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    await asyncio.wait_for(application(the_scope, receive, send), timeout=10)
    headers = {n.decode().lower(): v.decode() for n, v in started.get("headers", [])}
    return started.get("status", 0), headers, received


async def rows() -> list[AuditEvent]:
    await sync_to_async(audit_writer.flush)()
    return await sync_to_async(lambda: list(AuditEvent.objects.all()))()


async def test_a_missing_key_is_refused_without_receiving_the_body_and_the_connection_closes(
    plaintext,
):
    body = [{"type": "http.request", "body": b"{", "more_body": True}] * 1000
    status, headers, received = await call(
        scope("POST", "/v1/chat/completions", {"transfer-encoding": "chunked"}), body
    )
    assert (status, received) == (401, 0)
    assert headers["connection"] == "close"


async def test_a_body_in_pieces_is_put_together(plaintext):
    raw = orjson.dumps({"model": "echo", "messages": USER})
    pieces = [
        {"type": "http.request", "body": raw[i : i + 7], "more_body": i + 7 < len(raw)}
        for i in range(0, len(raw), 7)
    ]
    status, headers, received = await call(
        scope(
            "POST",
            "/v1/chat/completions",
            {"authorization": f"Bearer {plaintext}", "content-length": str(len(raw))},
        ),
        pieces,
    )
    assert (status, received) == (200, len(pieces))
    assert "connection" not in headers  # read to the end: the connection may be kept


async def test_a_request_without_a_body_keeps_its_connection(plaintext):
    status, headers, _ = await call(
        scope("GET", "/v1/models", {"authorization": f"Bearer {plaintext}"}),
        [{"type": "http.request", "body": b"", "more_body": False}],
    )
    assert status == 200
    assert "connection" not in headers


async def test_a_client_that_leaves_while_sending_is_recorded_as_cancelled(plaintext):
    status, _, received = await call(
        scope(
            "POST",
            "/v1/chat/completions",
            {"authorization": f"Bearer {plaintext}", "content-length": "1000"},
        ),
        [
            {"type": "http.request", "body": b'{"model": "echo", ', "more_body": True},
            {"type": "http.disconnect"},
        ],
    )
    assert (status, received) == (0, 2)  # no answer: nobody is there to read it
    [row] = await rows()
    assert (row.outcome, row.status_code) == ("cancelled", 499)
