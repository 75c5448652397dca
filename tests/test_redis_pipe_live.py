"""The proxy path's pipelined Redis connection, against real redis-server processes the
tests start, kill and restart (the rest of its tests, no server needed: test_redis_pipe.py)."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import redis
import redis.exceptions

from gateway_project.lib.redis_client import is_unavailable
from gateway_project.lib.redis_pipe import PipelinedRedis
from tests.live import RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def server():
    server = RedisServer().start()
    yield server
    server.stop()


def connect(url: str, timeout: float = 1.0) -> PipelinedRedis:
    return PipelinedRedis(url, timeout=timeout, loop=asyncio.get_running_loop())


async def test_concurrent_commands_each_get_their_own_reply_in_order(server):
    connection = connect(server.url)
    replies = await asyncio.gather(
        *(connection.execute("INCRBY", f"counter:{i % 5}", i) for i in range(500))
    )
    expected: dict[int, int] = {}
    for i, reply in enumerate(replies):
        expected[i % 5] = expected.get(i % 5, 0) + i
        assert reply == expected[i % 5]  # each caller sees the counter right after its INCRBY
    assert await connection.execute("GET", "counter:4") == str(expected[4]).encode()
    await connection.aclose()


async def test_scripts_error_replies_and_the_connection_survives_them(server):
    connection = connect(server.url)
    with pytest.raises(redis.exceptions.NoScriptError):
        await connection.execute("EVALSHA", "0" * 40, 0)
    with pytest.raises(redis.exceptions.ResponseError, match="wrong number of arguments"):
        await connection.execute("GET")
    assert await connection.execute("EVAL", "return {KEYS[1], ARGV[1]}", 1, "k", 42) == [
        b"k",
        b"42",
    ]
    assert await connection.execute("PING") == b"PONG"
    await connection.aclose()


async def test_the_database_and_password_of_the_url_are_used():
    server = RedisServer(password="s3cret").start()
    try:
        url = server.url.rsplit("/", 1)[0] + "/3"
        connection = connect(url)
        await connection.execute("SET", "where", "db3")
        assert redis.Redis.from_url(url).get("where") == b"db3"
        assert redis.Redis.from_url(server.url).get("where") is None  # not in db 0
        await connection.aclose()
        wrong = connect(url.replace("s3cret", "wrong"))
        with pytest.raises(redis.exceptions.AuthenticationError) as refused:
            await wrong.execute("PING")
        assert is_unavailable(refused.value)  # as redis-py: governance's failure policy applies
    finally:
        server.stop()


async def test_no_server_is_a_connection_error_and_a_restarted_one_is_used_again(server):
    connection = connect(server.url)
    assert await connection.execute("SET", "before", 1)
    server.stop()
    with pytest.raises(redis.exceptions.ConnectionError) as lost:
        await connection.execute("PING")
    assert is_unavailable(lost.value)
    with pytest.raises(redis.exceptions.ConnectionError):
        await connection.execute("PING")  # refused while it is down
    server.start()  # same port, empty
    assert await connection.execute("GET", "before") is None
    assert await connection.execute("PING") == b"PONG"
    await connection.aclose()


async def test_waiting_commands_fail_together_when_the_connection_drops(server):
    connection = connect(server.url, timeout=5)
    blocked = [asyncio.ensure_future(connection.execute("BLPOP", "never", 0)) for _ in range(3)]
    await asyncio.sleep(0.1)
    server.stop()
    for command in blocked:
        with pytest.raises(redis.exceptions.ConnectionError):
            await command


async def test_a_caller_that_gives_up_does_not_shift_the_replies_of_the_next(server):
    connection = connect(server.url)
    slow = asyncio.ensure_future(connection.execute("BLPOP", "queue", 0.3))
    await asyncio.sleep(0.05)
    slow.cancel()
    ping = asyncio.ensure_future(connection.execute("PING"))
    await asyncio.sleep(0.05)
    # Queued behind the abandoned BLPOP, whose own reply (nil, at 0.3 s) arrives first.
    await connection.execute("RPUSH", "queue", "x")
    assert await ping == b"PONG"
    assert await connection.execute("ECHO", "mine") == b"mine"
    await connection.aclose()
