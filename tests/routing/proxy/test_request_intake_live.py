"""Request intake against a real uvicorn gateway: the key is checked from the headers before
any of the body is received, a body over the limit is refused without being read, and huge
requests do not hold up other clients.

The uploads are written by hand on a raw socket, so the test sees how much the server
accepted while it was still sending (an HTTP client would send the whole body first).
"""

from __future__ import annotations

import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest

from tests.live import GatewayProcess, stop_quietly
from tests.personas import Personas

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]
LIMIT = 1_000_000
MB = 1024 * 1024
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker):
    process = GatewayProcess(extra_env={"GATEWAY_MAX_BODY_BYTES": str(LIMIT)}).start()
    yield process
    stop_quietly(process, django_db_blocker=django_db_blocker)


@pytest.fixture
def key(personas: Personas, request) -> Iterator[str]:
    yield personas.acme.plaintext_key
    # The gateway's audit rows must be written before the database is flushed for the
    # next test (a TRUNCATE racing the writer's COPY deadlocks on Postgres).
    for name in ("gateway", "default_gateway"):
        if name in request.fixturenames:
            request.getfixturevalue(name).drain()


@dataclass
class Upload:
    status: int | None  # None: no answer before the client gave up
    head: bytes  # the response's status line, headers and what came of its body
    sent_before_answer: int  # body bytes the server had taken when its answer arrived
    accepted: int  # body bytes the server took in all (it stopped, or the client did)
    seconds_to_answer: float | None


def upload(
    port: int,
    *,
    headers: dict[str, str],
    total: int,
    chunked: bool,
    declared_length: int | None = None,
    give_up_after: float = 20.0,
) -> Upload:
    """POST a body of `total` bytes as fast as the server takes it, reading its answer
    whenever one comes; after the answer, keep offering the rest for a moment to see
    whether the server still takes any."""
    lines = ["POST /v1/chat/completions HTTP/1.1", f"host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if chunked:
        lines.append("transfer-encoding: chunked")
    else:
        lines.append(f"content-length: {declared_length if declared_length is not None else total}")
    piece = b"x" * 65536
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    sock = socket.create_connection(("127.0.0.1", port))
    # A small send buffer, so that what the client "sent" is close to what the server read.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sock.setblocking(False)
    started = time.monotonic()
    accepted = 0
    pending = b""
    head = b""
    answered_at: float | None = None
    sent_before_answer = 0
    closed = False
    while not closed:
        now = time.monotonic()
        if answered_at is None and now - started > give_up_after:
            break
        if answered_at is not None and now - answered_at > 1.0:
            break  # it answered and has had a second to take more
        want_write = accepted < total
        readable, writable, _ = select.select([sock], [sock] if want_write else [], [], 0.05)
        if readable:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                closed = True
            head += data
            if answered_at is None and b"\r\n\r\n" in head:
                answered_at = time.monotonic()
                sent_before_answer = accepted
        if writable and not closed:
            if not pending:
                pending = frame
            try:
                written = sock.send(pending)
            except (BlockingIOError, InterruptedError):
                written = 0
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                written = 0
            pending = pending[written:]
            accepted += written
        if not want_write and answered_at is None and not readable:
            time.sleep(0.01)
    sock.close()
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
    return Upload(
        status=status,
        head=head,
        sent_before_answer=sent_before_answer,
        accepted=accepted,
        seconds_to_answer=None if answered_at is None else answered_at - started,
    )


def test_an_upload_without_a_key_gets_its_401_before_the_body_is_read(gateway):
    result = upload(
        gateway.port, headers={"content-type": "application/json"}, total=512 * MB, chunked=True
    )
    assert result.status == 401, result.head[:300]
    assert b'"invalid_api_key"' in result.head
    assert result.seconds_to_answer is not None and result.seconds_to_answer < 2
    # The client got as far as the socket buffers, not the 512 MB it was trying to send,
    # and the server closed the connection rather than read (or spool) the rest.
    assert result.sent_before_answer < 16 * MB
    assert result.accepted < 16 * MB
    assert httpx.get(f"{gateway.base_url}/health").status_code == 200
    gateway.drain()  # its audit row, before the next test's flush


def test_a_wrong_key_gets_its_401_before_the_body_is_read(gateway, key):
    result = upload(
        gateway.port,
        headers={"authorization": "Bearer gwk_not_a_real_key_at_all_0000000000"},
        total=512 * MB,
        chunked=True,
    )
    assert result.status == 401, result.head[:300]
    assert result.accepted < 16 * MB


def test_a_declared_length_over_the_limit_is_413_before_anything_is_sent(gateway, key):
    result = upload(
        gateway.port,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        total=0,  # the client announces 100 MB and waits for the answer
        declared_length=100 * MB,
        chunked=False,
        give_up_after=5,
    )
    assert result.status == 413, result.head[:300]
    assert b'"payload_too_large"' in result.head
    assert result.seconds_to_answer is not None and result.seconds_to_answer < 2


def test_a_chunked_body_past_the_limit_is_413_and_the_server_stops_reading(gateway, key):
    result = upload(
        gateway.port,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        total=512 * MB,
        chunked=True,
    )
    assert result.status == 413, result.head[:300]
    assert b'"payload_too_large"' in result.head
    assert b"connection: close" in result.head.lower()
    assert LIMIT <= result.accepted < 16 * MB
    # The gateway is still serving, and a body under the limit still gets through.
    ok = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "echo", "messages": [{"role": "user", "content": "x" * (LIMIT // 2)}]},
        timeout=10,
    )
    assert ok.status_code == 200, ok.text[:300]


@pytest.fixture(scope="module")
def default_gateway(django_db_setup, django_db_blocker):
    """A gateway with the shipped defaults (4 MB bodies, 10,000 content parts)."""
    process = GatewayProcess().start()
    yield process
    stop_quietly(process, django_db_blocker=django_db_blocker)


HOSTILE_SENDERS = """
import asyncio, os, sys, time, httpx, orjson
url, key, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
parts = [{"type": "text", "text": "hello!"}] * 120_000
huge = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": parts}]})
headers = {"authorization": "Bearer " + key, "content-type": "application/json"}
statuses = []
async def sender(client, until):
    while time.monotonic() < until:
        statuses.append((await client.post(url, content=huge, headers=headers)).status_code)
async def main():
    until = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(sender(client, until) for _ in range(8)))
asyncio.run(main())
print(len(huge), " ".join(map(str, statuses)))
"""


def test_huge_requests_do_not_hold_up_other_clients(default_gateway, key):
    """Eight clients sending 3.8 MB requests of 120,000 content parts each, back to back
    (from a process of their own, so this one only measures), while another client asks
    small questions: the big ones are refused (400) and the small one's latency stays
    bounded. (On 49ed717 the big ones were parsed, depth-checked and token-counted on the
    event loop, about 0.9 s each: the small requests' median went to seconds.)"""
    url = f"{default_gateway.base_url}/v1/chat/completions"
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    small = orjson.dumps({"model": "echo", "messages": HELLO})

    def small_latencies(client: httpx.Client, count: int) -> list[float]:
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            response = client.post(url, content=small, headers=headers)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text[:300]
            time.sleep(0.02)
        return latencies

    with httpx.Client(timeout=60) as client:
        small_latencies(client, 5)  # warm
        alone = small_latencies(client, 30)
        flood = subprocess.Popen(
            [sys.executable, "-c", HOSTILE_SENDERS, url, key, "4"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)  # all eight under way
        loaded = small_latencies(client, 30)
        output, _ = flood.communicate(timeout=60)
    size, *statuses = output.split()
    print(
        f"\nsmall requests alone: median {statistics.median(alone) * 1000:.1f} ms;"
        f" beside eight senders of {int(size) / 1e6:.1f} MB bodies:"
        f" median {statistics.median(loaded) * 1000:.1f} ms,"
        f" p90 {statistics.quantiles(loaded, n=10)[-1] * 1000:.1f} ms,"
        f" max {max(loaded) * 1000:.1f} ms; {len(statuses)} huge requests answered"
    )
    assert statuses and set(statuses) == {"400"}
    assert statistics.median(loaded) < 0.25
