"""A key revoked while Redis is away is refused by a real gateway process once Redis is back
(the lost bump is retried), or after the snapshot's maximum age if it never comes back.

Each test runs its own redis-server (free port) that it kills or stalls (SIGSTOP); the
test process plays the admin: it revokes the key through the service, whose signal tries
to announce the change on that Redis.
"""

from __future__ import annotations

import shutil
import signal
import time

import httpx
import pytest
import redis

from gateway_project.lib import generation
from tenants.services import api_key_revoke
from tests.live import GatewayProcess, RedisServer, stop_quietly

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def own_redis(tmp_path, settings, monkeypatch):
    server = RedisServer(directory=tmp_path).start()
    # This process announces its changes on the test's Redis, like the admin would.
    settings.REDIS_URL = server.url
    monkeypatch.setattr(generation, "_sync_client", None)
    yield server
    server.stop()


def gateway_for(server: RedisServer, *, max_age: float) -> GatewayProcess:
    return GatewayProcess(
        extra_env={
            "REDIS_URL": server.url,
            "GATEWAY_SNAPSHOT_CHECK_SECONDS": "0.2",
            "GATEWAY_SNAPSHOT_MAX_AGE_SECONDS": str(max_age),
        }
    ).start()


def status(gateway: GatewayProcess, plaintext: str) -> int:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {plaintext}"},
        json={"model": "echo", "messages": HELLO},
        timeout=10,
    ).status_code


def seconds_until_refused(gateway: GatewayProcess, plaintext: str, *, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if status(gateway, plaintext) == 401:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"the revoked key was still accepted {within} s later")


def test_a_key_revoked_while_redis_is_down_is_refused_once_redis_is_back(
    own_redis, personas, django_db_blocker
):
    # A maximum age far off: only the retried bump can tell the gateway.
    gateway = gateway_for(own_redis, max_age=600)
    try:
        assert status(gateway, personas.acme.plaintext_key) == 200
        redis.Redis.from_url(own_redis.url).save()  # the generation the gateway holds
        own_redis.stop()
        api_key_revoke(api_key=personas.acme.key)  # committed; the announcement fails
        assert (
            status(gateway, personas.acme.plaintext_key) == 200
        )  # nothing has told the gateway yet
        time.sleep(1)
        own_redis.start()  # back, with the old generation token from its saved data
        assert redis.Redis.from_url(own_redis.url).get(generation.REDIS_KEY) is not None
        waited = seconds_until_refused(gateway, personas.acme.plaintext_key, within=15)
        print(f"\nrefused {waited:.2f} s after Redis came back")
    finally:
        stop_quietly(gateway, django_db_blocker=django_db_blocker)


def test_a_key_revoked_while_redis_stalls_is_refused_within_the_maximum_age(
    own_redis, personas, django_db_blocker
):
    gateway = gateway_for(own_redis, max_age=3)
    try:
        assert status(gateway, personas.acme.plaintext_key) == 200
        own_redis.process.send_signal(signal.SIGSTOP)  # stalled, and it stays so
        revoked_at = time.monotonic()
        api_key_revoke(api_key=personas.acme.key)  # the announcement times out
        waited = seconds_until_refused(gateway, personas.acme.plaintext_key, within=15)
        since_revocation = time.monotonic() - revoked_at
        print(f"\nrefused {since_revocation:.2f} s after the revocation, Redis still stalled")
        assert waited < 3 + 3  # the maximum age, plus the generation reads timing out
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
        stop_quietly(gateway, django_db_blocker=django_db_blocker)
