"""Rate limits (requests and tokens per minute, at each scope, and their headers), and a
warm governed request's zero database queries; through the proxy, in-process (ASGI handler,
real database, Redis or the in-process fakeredis for the counters)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async

from tests.conftest import assert_envelope, count_queries_everywhere
from tests.routing.proxy.admission.support import (
    CAP,
    add_budget,
    add_rate_limit,
    audit_row,
    audit_rows,
    chat,
    post,
    prompt_tokens,
    stream_events,
)

pytestmark = pytest.mark.django_db(transaction=True)


# --- rate limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "others"),
    [
        # (whose key, route, status) for requests made after acme's key was refused on echo
        ("key", [("acme's second key", "echo", 200), ("globex", "echo", 200)]),
        ("tenant", [("acme's second key", "other", 429), ("globex", "echo", 200)]),
        ("tenant-model", [("acme", "other", 200), ("globex", "echo", 200)]),
        ("route", [("acme", "other", 200), ("globex", "echo", 429)]),
        ("global", [("globex", "other", 429)]),
    ],
)
async def test_an_rpm_limit_of_two_refuses_the_third_request(personas, keys, scope, others):
    await sync_to_async(add_rate_limit)(personas, scope, rpm=2)
    key = personas.acme.plaintext_key

    first, second, third = [await post(key, chat()) for _ in range(3)]

    assert (first.status_code, second.status_code) == (200, 200)
    assert first["x-ratelimit-limit-requests"] == "2"
    assert first["x-ratelimit-remaining-requests"] == "1"
    assert second["x-ratelimit-remaining-requests"] == "0"
    error = assert_envelope(third, 429, "rate_limit_error", "rate_limit_exceeded")
    assert "2 requests per minute" in error["message"]
    retry_ms = int(third["retry-after-ms"])
    assert 0 < retry_ms <= 60_000
    assert int(third["retry-after"]) == -(-retry_ms // 1000)
    assert third["x-ratelimit-limit-requests"] == "2"
    assert third["x-ratelimit-remaining-requests"] == "0"
    assert third["x-ratelimit-reset-requests"] == f"{retry_ms}ms"
    row = await audit_row(third)
    assert (row.outcome, row.status_code, row.error_type) == (
        "rejected",
        429,
        "rate_limit_exceeded",
    )
    assert (row.tenant_id, row.route, row.total_tokens, row.cost_usd) == (
        personas.acme.tenant.id,
        "echo",
        0,
        0,
    )
    for who, route, status in others:
        response = await post(keys[who], chat(route))
        assert response.status_code == status, (who, route)


async def test_a_response_without_limits_carries_no_rate_headers(personas):
    response = await post(personas.acme.plaintext_key, chat())

    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("x-ratelimit")]


async def test_a_tpm_limit_refuses_a_request_whose_tokens_do_not_fit(personas):
    await sync_to_async(add_rate_limit)(personas, "tenant", tpm=100)
    key = personas.acme.plaintext_key
    first = await post(key, chat())
    used = orjson.loads(first.content)["usage"]["total_tokens"]
    # The window holds what the first request really used (the estimate was corrected).
    room = 100 - used - prompt_tokens()

    refused = await post(key, chat(max_tokens=room + 1))
    fits = await post(key, chat(max_tokens=room))

    assert first["x-ratelimit-limit-tokens"] == "100"
    assert first["x-ratelimit-remaining-tokens"] == str(100 - prompt_tokens() - CAP)
    error = assert_envelope(refused, 429, "rate_limit_error", "rate_limit_exceeded")
    assert "100 tokens per minute" in error["message"]
    assert refused["x-ratelimit-limit-tokens"] == "100"
    assert refused["x-ratelimit-remaining-tokens"] == "0"
    assert 0 < int(refused["retry-after-ms"]) <= 60_000
    assert int(refused["retry-after"]) >= 1
    assert "x-should-retry" not in refused
    assert fits.status_code == 200
    assert fits["x-ratelimit-remaining-tokens"] == "0"
    row = await audit_row(refused)
    assert (row.outcome, row.status_code, row.error_type) == (
        "rejected",
        429,
        "rate_limit_exceeded",
    )


async def test_a_request_bigger_than_the_whole_tpm_is_told_not_to_retry(personas):
    await sync_to_async(add_rate_limit)(personas, "key", tpm=100)

    response = await post(personas.acme.plaintext_key, chat(max_tokens=200))

    assert_envelope(response, 429, "rate_limit_error", "rate_limit_exceeded")
    assert response["x-should-retry"] == "false"
    assert "retry-after" not in response
    assert "retry-after-ms" not in response


# --- the hot path ------------------------------------------------------------------------------


async def test_a_warm_governed_request_makes_no_database_query(personas):
    def configure() -> None:
        for scope in ("key", "tenant", "tenant-model", "route", "global"):
            add_rate_limit(personas, scope, rpm=1000, tpm=10**7)
        for scope in ("key", "tenant", "route"):
            add_budget(personas, scope, max_tokens=10**9, max_cost_usd=Decimal(1000))
            add_budget(personas, scope, period="monthly", max_tokens=10**9, hard=False)

    await sync_to_async(configure)()
    key = personas.acme.plaintext_key
    warm = await post(key, chat())  # builds the snapshot and each budget's counter
    assert warm.status_code == 200

    with count_queries_everywhere() as counter:
        for _ in range(5):
            response = await post(key, chat())
            assert response.status_code == 200
            assert response["x-ratelimit-limit-requests"] == "1000"
        stream = await post(key, chat(stream=True))
        events = await stream_events(stream)
        assert events[-1] == b"[DONE]"

    assert counter.queries == []
    assert len(await audit_rows()) == 7
