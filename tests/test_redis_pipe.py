"""The proxy path's pipelined Redis connection without a Redis server: how commands are
encoded, and a silent TCP server for the timeout (against real redis-server processes:
test_redis_pipe_live.py)."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.exceptions

from gateway_project.lib.redis_client import is_unavailable
from gateway_project.lib.redis_pipe import PipelinedRedis, encode_command
from tests.live import free_port


def connect(url: str, timeout: float = 1.0) -> PipelinedRedis:
    return PipelinedRedis(url, timeout=timeout, loop=asyncio.get_running_loop())


def test_commands_are_encoded_as_resp_bulk_strings():
    assert encode_command(("SET", b"k", 7, -1, 0.5)) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n$2\r\n-1\r\n$3\r\n0.5\r\n"
    )
    for unsendable in (None, True):
        with pytest.raises(redis.exceptions.DataError):
            encode_command(("SET", "k", unsendable))


async def test_a_server_that_stops_answering_times_out_and_is_left_for_a_new_connection():
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    port = free_port()
    listener = await asyncio.start_server(silent, "127.0.0.1", port)
    try:
        connection = connect(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        started = asyncio.get_running_loop().time()
        with pytest.raises(redis.exceptions.TimeoutError) as timed_out:
            await connection.execute("PING")
        assert 0.15 < asyncio.get_running_loop().time() - started < 1.0
        assert is_unavailable(timed_out.value)
        with pytest.raises(redis.exceptions.TimeoutError):
            await connection.execute("PING")
        assert len(accepted) == 2  # the second command did not queue behind the first
    finally:
        listener.close()
        for writer in accepted:
            writer.close()
        await listener.wait_closed()
