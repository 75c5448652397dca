"""gateway_project/lib/streaming.py: a synchronous stream stays a stream under ASGI."""

from __future__ import annotations

import asyncio
import warnings
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from gateway_project.lib.streaming import SyncStreamingResponse


def counted(pulled: list[int], chunks: int):
    for index in range(chunks):
        pulled.append(index)
        yield f"chunk {index}\n"


async def test_under_asgi_chunks_are_pulled_one_at_a_time_not_all_first():
    pulled: list[int] = []
    response = SyncStreamingResponse(counted(pulled, 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Django warns when it reads the whole iterator first
        parts = aiter(response)
        assert await anext(parts) == b"chunk 0\n"
        assert pulled == [0]
        assert await anext(parts) == b"chunk 1\n"
        assert pulled == [0, 1]


def test_under_wsgi_it_iterates_as_usual():
    response = SyncStreamingResponse(counted([], 3))
    assert b"".join(response) == b"chunk 0\nchunk 1\nchunk 2\n"
    assert response["X-Accel-Buffering"] == "no"


@pytest.mark.django_db(transaction=True)
async def test_ledger_lines_stream_through_the_asgi_handler_from_a_server_side_cursor():
    """The lines endpoint end to end under Django's ASGI handler (what serves the
    management API in production): the cursor opened in the view's thread keeps being
    read from that thread, chunk after chunk."""
    from billing import exports
    from gateway_project.asgi import application
    from tests.billing.reporting_support import line
    from tests.factories import make_tenant
    from tests.gateway_project.management_api import issue_token, make_staff

    def data() -> str:
        tenant = make_tenant("acme")
        for minute in range(25):
            line(tenant, datetime(2027, 3, 1, 0, minute, tzinfo=UTC))
        return issue_token(make_staff("fiona", "billing.view_usageline"))

    token = await sync_to_async(data)()
    original = exports.CHUNK_ROWS
    exports.CHUNK_ROWS = 10
    # The handler runs each request in a thread of its own: a connection kept open there
    # (CONN_MAX_AGE) would outlive the test and its database.
    database = connections.settings["default"]
    kept_for = database["CONN_MAX_AGE"]
    database["CONN_MAX_AGE"] = 0
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/billing/lines.csv",
        "raw_path": b"/api/v1/billing/lines.csv",
        "root_path": "",
        "query_string": b"month=2027-03",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"testserver"), (b"authorization", f"Token {token}".encode())],
    }
    sent: list[dict] = []
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            warnings.filterwarnings("error", message=".*must consume synchronous iterators.*")
            await application(scope, receive, send)
    finally:
        exports.CHUNK_ROWS = original
        database["CONN_MAX_AGE"] = kept_for
    assert sent[0]["status"] == 200
    bodies = [message["body"] for message in sent[1:] if message.get("body")]
    assert len(bodies) == 3  # the header and 10 lines, 10 lines, 5 lines: as they came
    assert b"".join(bodies).decode().count("\n") == 1 + 25
