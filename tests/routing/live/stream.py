"""A watcher of the live traffic stream in-process: the production ASGI entry point
(gateway_project.asgi.application: Channels' router, session auth, the consumer) driven by
channels' ApplicationCommunicator, and the proxy requests it should see."""

from __future__ import annotations

import asyncio

import orjson
from asgiref.sync import sync_to_async
from channels.testing import ApplicationCommunicator
from django.conf import settings
from django.test import AsyncClient, Client

from gateway_project.asgi import application
from tests.gateway_project.management_api import make_staff

PATH = "/admin/live/stream/"
USER = [{"role": "user", "content": "Hello there"}]


def login_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def staff_cookie(username: str, *permissions: str, groups: tuple[str, ...] = ()) -> str:
    return login_cookie(make_staff(username, *permissions, groups=groups))


class Stream:
    def __init__(self, cookie: str | None, query: str = "") -> None:
        headers = [(b"host", b"testserver")]
        if cookie:
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.communicator = ApplicationCommunicator(application, scope)
        self.raw = b""  # every body byte received
        self._buffer = b""

    async def open(self) -> tuple[int, dict[bytes, bytes]]:
        await self.communicator.send_input({"type": "http.request", "body": b""})
        start = await self.communicator.receive_output(5)
        assert start["type"] == "http.response.start"
        return start["status"], dict(start["headers"])

    async def chunk(self, wait: float = 5) -> bytes:
        message = await self.communicator.receive_output(wait)
        assert message["type"] == "http.response.body", message
        self.raw += message["body"]
        return message["body"]

    async def answer(self) -> dict:
        """The whole body of a refusal (403, 400), as JSON."""
        body = await self.chunk()
        await self.communicator.wait(5)
        return orjson.loads(body)

    async def events(self, count: int, wait: float = 5) -> list[dict]:
        """The next `count` request events (comment lines skipped)."""
        found: list[dict] = []
        deadline = asyncio.get_running_loop().time() + wait
        while len(found) < count:
            while b"\n\n" in self._buffer and len(found) < count:
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                lines = block.split(b"\n")
                if b"event: request" in lines:
                    data = next(line for line in lines if line.startswith(b"data: "))
                    found.append(orjson.loads(data[len(b"data: ") :]))
            if len(found) < count:
                left = deadline - asyncio.get_running_loop().time()
                self._buffer += await self.chunk(max(left, 0.01))
        return found

    async def no_more_events(self, wait: float = 0.5) -> None:
        assert await self.communicator.receive_nothing(wait), "an event that should not be"
        assert b"event: request" not in self._buffer

    async def close(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(5)


async def ask(key: str, route: str, content: str = "Hello there", **extra: object):
    """One chat completion through the proxy (Django's async test client)."""
    body = {"model": route, "messages": [{"role": "user", "content": content}], **extra}
    return await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps(body),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )


@sync_to_async
def ops_cookie(username: str = "olga") -> str:
    """The session cookie of a staff user who may watch (as Ops may: a transactional
    test's database has lost the groups the migrations made, so the permission itself)."""
    return staff_cookie(username, "routing.view_live_traffic")
