"""The live traffic page end to end: a real gateway of two uvicorn workers sharing Redis.
A staff user logs in through the admin's form (a session cookie), opens the event stream
with httpx, and every request sent through the proxy, whichever worker served it, arrives
once on that one stream."""

from __future__ import annotations

import queue
import re
import shutil
import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.gateway_project.management_api import PASSWORD, make_staff
from tests.live import GatewayProcess, RedisServer, stop_quietly
from tests.personas import Personas

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def redis_url(settings) -> Iterator[str]:
    """The test run's Redis, or one of this test's own when the run has none."""
    if settings.REDIS_URL:
        yield settings.REDIS_URL
        return
    own = RedisServer().start()
    try:
        yield own.url
    finally:
        own.stop()


@pytest.fixture
def gateway(personas: Personas, redis_url, django_db_blocker) -> Iterator[GatewayProcess]:
    make_staff("olga", "routing.view_live_traffic")
    process = GatewayProcess(workers=2, extra_env={"REDIS_URL": redis_url}).start()
    yield process
    stop_quietly(process, django_db_blocker=django_db_blocker)


def log_in(base_url: str) -> httpx.Client:
    """A browser's login: the form's CSRF token, then the session cookie it gets back."""
    client = httpx.Client(base_url=base_url, timeout=10)
    form = client.get("/admin/login/").text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token is not None
    answer = client.post(
        "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token[1], "username": "olga", "password": PASSWORD},
        headers={"referer": f"{base_url}/admin/login/"},
    )
    assert answer.status_code == 302, answer.text
    assert "sessionid" in client.cookies
    return client


class Watcher(threading.Thread):
    """Reads the event stream in the background, as the page's EventSource would."""

    def __init__(self, client: httpx.Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.events: queue.Queue[dict] = queue.Queue()
        self.opened = threading.Event()
        self.status = 0
        self.content_type = ""

    def run(self) -> None:
        try:
            with self.client.stream("GET", "/admin/live/stream/", timeout=None) as response:
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                self.opened.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.put(orjson.loads(line[len("data: ") :]))
        except httpx.HTTPError:
            pass  # closed by the test
        finally:
            self.opened.set()

    def take(self, timeout: float = 5.0) -> list[dict]:
        """What arrived until nothing more came for `timeout` seconds... or 0.5 s."""
        found = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found.append(self.events.get(timeout=0.5))
            except queue.Empty:
                if found:
                    break
        return found


def send(base_url: str, key: str, count: int) -> list[str]:
    """`count` requests, each on a new connection (so the workers share them)."""
    ids = []
    for _ in range(count):
        response = httpx.post(
            f"{base_url}/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "Hi"}]},
            headers={"authorization": f"Bearer {key}", "connection": "close"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        ids.append(response.headers["x-request-id"])
    return ids


def test_one_watcher_sees_every_request_of_both_workers(personas, gateway):
    unauthenticated = httpx.get(f"{gateway.base_url}/admin/live/stream/", timeout=5)
    assert unauthenticated.status_code == 403

    client = log_in(gateway.base_url)
    watcher = Watcher(client)
    watcher.start()
    assert watcher.opened.wait(10)
    assert watcher.status == 200 and watcher.content_type.startswith("text/event-stream")
    time.sleep(1.5)  # the other worker re-reads who watches once a second

    sent: list[str] = []
    seen: dict[str, dict] = {}
    for _ in range(10):  # until both workers have served some (the kernel shares them out)
        sent += send(gateway.base_url, personas.acme.plaintext_key, 20)
        for event in watcher.take():
            assert event["id"] not in seen, "a request arrived twice"
            seen[event["id"]] = event
        if len({event["worker"] for event in seen.values()}) == 2 and set(sent) <= set(seen):
            break
    client.close()
    watcher.join(5)

    assert len({event["worker"] for event in seen.values()}) == 2
    assert set(seen) == set(sent)  # every request, of either worker, exactly once
    assert {event["tenant"] for event in seen.values()} == {"acme"}
    gateway.drain()
