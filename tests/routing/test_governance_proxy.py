"""Rate limits, budgets and policies through the proxy, in-process (ASGI handler, real
database, Redis or the in-process fakeredis for the counters)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from audit.models import AuditEvent
from audit.writer import audit_writer
from billing import services
from billing.governance import LimitSpec, cost_to_units, governor, units_to_cost
from billing.models import Budget, BudgetAlert
from billing.periods import period_for
from billing.services import RateLimitSpec, Subject, budget_create, rate_limit_create
from providers.tokens import count_prompt_tokens
from tests import factories
from tests.conftest import assert_envelope, count_queries_everywhere
from tests.fakes.upstreams import COMPLETION_TOKENS, PROMPT_TOKENS

pytestmark = pytest.mark.django_db(transaction=True)

USER = [{"role": "user", "content": "Hello there"}]
CAP = 10  # the max_tokens most requests here send: it bounds what they reserve


@pytest.fixture(autouse=True)
async def _fresh_governance() -> AsyncIterator[None]:
    """Counters live in Redis (or fakeredis), not in the test database: start from none."""
    await governor.reset_for_tests()
    yield
    await governor.reset_for_tests()
    # Budget rebuilds and alerts use the loop's default executor: let its threads (and their
    # database connections) go now, or the test database cannot be dropped at the end.
    await asyncio.get_running_loop().shutdown_default_executor()
    gc.collect()


@pytest.fixture
def world(transactional_db):
    """acme has two keys, globex one; the global routes `echo` and `other` use the stub."""
    acme = factories.make_tenant("acme")
    globex = factories.make_tenant("globex")
    local = factories.make_provider("local", kind="stub")
    # Prices with many decimals: every cost has ten of them, and must add up exactly.
    echo = factories.make_model(
        local, "echo", input_per_million="1.234567", output_per_million="2.345678"
    )
    return {
        "acme": acme,
        "globex": globex,
        "stub": local,
        "acme_key": factories.make_key(acme),
        "acme_key2": factories.make_key(acme, name="second key"),
        "globex_key": factories.make_key(globex),
        "echo": factories.make_route("echo", echo),
        "other": factories.make_route("other", echo),
    }


async def post(key: str, body: object, **headers: str):
    headers["authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return await AsyncClient().post(
        "/v1/chat/completions", data=data, content_type="application/json", headers=headers
    )


def chat(model: str = "echo", **extra: object) -> dict:
    return {"model": model, "messages": USER, "max_tokens": CAP, **extra}


async def audit_rows() -> list[AuditEvent]:
    await sync_to_async(audit_writer.flush)()
    return await sync_to_async(lambda: list(AuditEvent.objects.order_by("created_at", "id")))()


async def audit_row(response) -> AuditEvent:
    [row] = [r for r in await audit_rows() if r.request_id == response["x-request-id"]]
    return row


def prompt_tokens() -> int:
    """What the gateway counts for USER before the call (the stub's own usage agrees)."""
    return count_prompt_tokens(USER, "stub")


async def budget_counter(budget: Budget) -> dict[str, int]:
    key = f"gw:bud:{budget.id}:{period_for(budget.period, timezone.now()).key}"
    raw = await governor._client().hgetall(key)
    return {k.decode(): int(v) for k, v in raw.items()}


def owner(world: dict, scope: str):  # type: ignore[no-untyped-def]
    return {
        "key": world["acme_key"].api_key,
        "tenant": world["acme"],
        "tenant-model": world["acme"],
        "route": world["echo"],
        "global": None,
    }[scope]


def add_rate_limit(world: dict, scope: str, **spec: int) -> None:
    model_name = "echo" if scope == "tenant-model" else ""
    rate_limit_create(
        subject=Subject.of(owner(world, scope)),
        spec=RateLimitSpec(model_name=model_name, **spec),
    )


def add_budget(world: dict, scope: str, **spec: object) -> Budget:
    return budget_create(
        subject=Subject.of(owner(world, scope)),
        spec=services.BudgetSpec(**{"period": "total", **spec}),  # type: ignore[arg-type]
    )


# --- rate limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "others"),
    [
        # (key, route, status) for requests made after acme's key was refused on echo
        ("key", [("acme_key2", "echo", 200), ("globex_key", "echo", 200)]),
        ("tenant", [("acme_key2", "other", 429), ("globex_key", "echo", 200)]),
        ("tenant-model", [("acme_key", "other", 200), ("globex_key", "echo", 200)]),
        ("route", [("acme_key", "other", 200), ("globex_key", "echo", 429)]),
        ("global", [("globex_key", "other", 429)]),
    ],
)
async def test_an_rpm_limit_of_two_refuses_the_third_request(world, scope, others):
    await sync_to_async(add_rate_limit)(world, scope, rpm=2)
    key = world["acme_key"].plaintext

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
        world["acme"].id,
        "echo",
        0,
        0,
    )
    for key_name, route, status in others:
        response = await post(world[key_name].plaintext, chat(route))
        assert response.status_code == status, (key_name, route)


async def test_a_response_without_limits_carries_no_rate_headers(world):
    response = await post(world["acme_key"].plaintext, chat())

    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("x-ratelimit")]


async def test_a_tpm_limit_refuses_a_request_whose_tokens_do_not_fit(world):
    await sync_to_async(add_rate_limit)(world, "tenant", tpm=100)
    key = world["acme_key"].plaintext
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


async def test_a_request_bigger_than_the_whole_tpm_is_told_not_to_retry(world):
    await sync_to_async(add_rate_limit)(world, "key", tpm=100)

    response = await post(world["acme_key"].plaintext, chat(max_tokens=200))

    assert_envelope(response, 429, "rate_limit_error", "rate_limit_exceeded")
    assert response["x-should-retry"] == "false"
    assert "retry-after" not in response
    assert "retry-after-ms" not in response


# --- budgets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "others"),
    [
        ("tenant", [("acme_key2", "echo", 429), ("globex_key", "echo", 200)]),
        ("key", [("acme_key2", "echo", 200), ("acme_key", "other", 429)]),
        ("route", [("acme_key", "other", 200), ("globex_key", "echo", 429)]),
    ],
)
async def test_an_exhausted_hard_budget_is_insufficient_quota(world, scope, others):
    reserve = prompt_tokens() + CAP
    # Room for two reservations: two requests' real spend plus a third reservation is not.
    await sync_to_async(add_budget)(world, scope, max_tokens=2 * reserve)
    key = world["acme_key"].plaintext

    first, second, third = [await post(key, chat()) for _ in range(3)]

    assert (first.status_code, second.status_code) == (200, 200)
    error = assert_envelope(third, 429, "insufficient_quota", "insufficient_quota")
    assert f"total tokens budget of this {scope}" in error["message"]
    assert third["x-should-retry"] == "false"
    assert "retry-after" not in third
    row = await audit_row(third)
    assert (row.outcome, row.status_code, row.error_type) == ("rejected", 429, "insufficient_quota")
    for key_name, route, status in others:
        response = await post(world[key_name].plaintext, chat(route))
        assert response.status_code == status, (key_name, route)


async def test_recorded_spend_is_the_audit_rows_sum_and_stays_under_a_hard_cost_budget(world):
    budget = await sync_to_async(add_budget)(world, "tenant", max_cost_usd=Decimal("0.0001"))
    key = world["acme_key"].plaintext

    statuses = [(await post(key, chat())).status_code for _ in range(6)]

    assert statuses == [200, 200, 200, 429, 429, 429]
    rows = await audit_rows()
    assert len(rows) == 6
    spent_cost = sum((row.cost_usd for row in rows), Decimal(0))
    spent_tokens = sum(row.total_tokens for row in rows)
    assert spent_cost.as_tuple().exponent == -10  # ten decimal places, none lost
    counter = await budget_counter(budget)
    assert units_to_cost(counter["sc"]) == spent_cost <= budget.max_cost_usd
    assert counter["st"] == spent_tokens
    assert (counter["rt"], counter["rc"]) == (0, 0)

    # Redis loses its counters: they are rebuilt from those audit rows, to the same total.
    await governor.reset_for_tests()
    response = await post(key, chat())
    assert_envelope(response, 429, "insufficient_quota", "insufficient_quota")
    rebuilt = await budget_counter(budget)
    assert (units_to_cost(rebuilt["sc"]), rebuilt["st"]) == (spent_cost, spent_tokens)


async def test_a_free_models_tokens_are_recorded_against_a_token_budget(world):
    free = await sync_to_async(factories.make_model)(
        world["stub"],
        "free",
        input_per_million="0",
        output_per_million="0",
    )
    await sync_to_async(factories.make_route)("free", free)
    budget = await sync_to_async(add_budget)(world, "tenant", max_tokens=10**6)

    response = await post(world["acme_key"].plaintext, chat("free"))

    assert response.status_code == 200
    row = await audit_row(response)
    assert row.cost_usd == 0 and row.total_tokens > 0
    counter = await budget_counter(budget)
    assert (counter["st"], counter["rt"]) == (row.total_tokens, 0)


async def test_a_soft_budget_never_refuses_and_records_alerts_at_50_80_and_100_percent(
    world, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    budget = await sync_to_async(add_budget)(world, "tenant", max_tokens=100, hard=False)
    key = world["acme_key"].plaintext

    responses = [await post(key, chat()) for _ in range(8)]

    assert [r.status_code for r in responses] == [200] * 8
    running, totals = 0, []
    for response in responses:
        running += orjson.loads(response.content)["usage"]["total_tokens"]
        totals.append(running)
    assert totals[-1] > 100  # past the limit, and still served
    expected = {t: next(total for total in totals if total >= t) for t in (50, 80, 100)}
    alerts: list[BudgetAlert] = []
    for _ in range(100):  # recorded off the event loop, in an executor thread
        alerts = await sync_to_async(lambda: list(BudgetAlert.objects.order_by("threshold")))()
        if len(alerts) >= 3:
            break
        await asyncio.sleep(0.05)
    assert [(a.budget_id, a.period_key, a.threshold) for a in alerts] == [
        (budget.id, "total", 50),
        (budget.id, "total", 80),
        (budget.id, "total", 100),
    ]
    assert {a.threshold: a.spent_tokens for a in alerts} == expected


# --- policies ----------------------------------------------------------------------------------


def set_policy(model_object, **fields: object) -> None:  # type: ignore[no-untyped-def]
    for name, value in fields.items():
        setattr(model_object, name, value)
    model_object.save()


DEEP_USER = [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]


@pytest.mark.parametrize(
    ("who", "policy", "body", "status", "type_", "code", "param"),
    [
        (
            "tenant",
            {"allowed_routes": ["other"]},
            chat(),
            403,
            "permission_error",
            "model_not_allowed",
            None,
        ),
        (
            "key",
            {"max_body_bytes": 200},
            chat(messages=[{"role": "user", "content": "x" * 300}]),
            413,
            "invalid_request_error",
            "payload_too_large",
            None,
        ),
        (
            "key",
            {"max_messages": 1},
            chat(messages=USER * 2),
            400,
            "invalid_request_error",
            "policy_max_messages",
            "messages",
        ),
        ("key", {"max_n": 1}, chat(n=2), 400, "invalid_request_error", "policy_max_n", "n"),
        (
            "key",
            {"max_output_tokens": CAP - 1},
            chat(),
            400,
            "invalid_request_error",
            "policy_max_output_tokens",
            "max_tokens",
        ),
        (
            "tenant",
            {"max_prompt_tokens": 5},
            chat(),
            400,
            "invalid_request_error",
            "policy_max_prompt_tokens",
            "messages",
        ),
        (
            "tenant",
            {"max_depth": 4},
            chat(messages=DEEP_USER),
            400,
            "invalid_request_error",
            "policy_max_depth",
            None,
        ),
    ],
)
async def test_a_request_outside_the_policy_is_refused_and_audited(
    world, who, policy, body, status, type_, code, param
):
    subject = world["acme"] if who == "tenant" else world["acme_key"].api_key
    await sync_to_async(set_policy)(subject, **policy)

    response = await post(world["acme_key"].plaintext, body)
    allowed = await post(world["globex_key"].plaintext, body)

    error = assert_envelope(response, status, type_, code)
    assert error["param"] == param
    row = await audit_row(response)
    assert (row.outcome, row.status_code, row.error_type) == ("rejected", status, code)
    assert (row.tenant_id, row.provider) == (world["acme"].id, "")
    assert allowed.status_code == 200  # the policy is acme's, not everyone's


async def test_a_keys_policy_tightens_its_tenants_and_never_loosens_it(world):
    await sync_to_async(set_policy)(world["acme"], max_messages=3, max_n=1)
    await sync_to_async(set_policy)(world["acme_key"].api_key, max_messages=1, max_n=5)
    key, untightened = world["acme_key"].plaintext, world["acme_key2"].plaintext

    two_messages = await post(key, chat(messages=USER * 2))
    two_choices = await post(key, chat(n=2))

    error = assert_envelope(two_messages, 400, "invalid_request_error", "policy_max_messages")
    assert "At most 1 messages" in error["message"]
    error = assert_envelope(two_choices, 400, "invalid_request_error", "policy_max_n")
    assert "at most 1" in error["message"]
    assert (await post(untightened, chat(messages=USER * 2))).status_code == 200
    assert (await post(untightened, chat(messages=USER * 4))).status_code == 400


# --- the output cap sent upstream --------------------------------------------------------------


@pytest.fixture
def gpt(world, fake_openai):
    provider = factories.make_provider(
        "fake-openai",
        kind="openai",
        base_url=fake_openai.openai_base_url,
        timeout_s=5,
        connect_timeout_s=1,
    )
    route = factories.make_route("gpt", factories.make_model(provider, "ok"), tenant=world["acme"])
    return route


def set_route_default(route, value: int | None) -> None:  # type: ignore[no-untyped-def]
    route.default_max_tokens = value
    route.save()


async def test_a_budget_injects_an_output_cap_when_the_client_set_none(
    world, gpt, fake_openai, settings
):
    settings.GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS = 321
    await sync_to_async(add_budget)(world, "tenant", max_tokens=10**9)
    key = world["acme_key"].plaintext

    uncapped = await post(key, {"model": "gpt", "messages": USER})
    sent_uncapped = fake_openai.requests[-1].body
    capped = await post(key, {"model": "gpt", "messages": USER, "max_tokens": 20})
    sent_capped = fake_openai.requests[-1].body

    assert (uncapped.status_code, capped.status_code) == (200, 200)
    assert sent_uncapped["max_completion_tokens"] == 321
    assert sent_capped["max_tokens"] == 20
    assert "max_completion_tokens" not in sent_capped


async def test_the_routes_default_cap_is_the_one_injected(world, gpt, fake_openai):
    await sync_to_async(set_route_default)(gpt, 77)
    await sync_to_async(add_budget)(world, "key", max_tokens=10**9)

    response = await post(world["acme_key"].plaintext, {"model": "gpt", "messages": USER})

    assert response.status_code == 200
    assert fake_openai.requests[-1].body["max_completion_tokens"] == 77


async def test_without_a_budget_or_a_default_nothing_is_injected(world, gpt, fake_openai):
    response = await post(world["acme_key"].plaintext, {"model": "gpt", "messages": USER})

    assert response.status_code == 200
    sent = fake_openai.requests[-1].body
    assert "max_completion_tokens" not in sent and "max_tokens" not in sent


async def stream_events(response) -> list[bytes]:
    raw = b"".join([part async for part in response.streaming_content])
    return [line[6:] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]


async def test_a_stream_that_ignores_the_cap_is_cut_at_the_budget(world, gpt, fake_openai):
    await sync_to_async(set_route_default)(gpt, 1)
    await sync_to_async(add_budget)(world, "tenant", max_tokens=10**9)

    response = await post(
        world["acme_key"].plaintext, {"model": "gpt", "messages": USER, "stream": True}
    )

    assert response.status_code == 200
    events = await stream_events(response)
    assert fake_openai.requests[-1].body["max_completion_tokens"] == 1
    assert b"[DONE]" not in events
    error = orjson.loads(events[-1])["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events[:-1]
        for choice in orjson.loads(event)["choices"]
    )
    assert len(text) <= 1 * 4 + 16  # the cap, at about four characters a token
    row = await audit_row(response)
    assert (row.outcome, row.status_code) == ("rejected", 429)
    assert row.metadata["stopped_at_budget"] is True


async def test_a_soft_budget_never_cuts_a_stream(world, gpt, fake_openai):
    await sync_to_async(set_route_default)(gpt, 1)
    await sync_to_async(add_budget)(world, "tenant", max_tokens=10**9, hard=False)

    response = await post(
        world["acme_key"].plaintext, {"model": "gpt", "messages": USER, "stream": True}
    )

    events = await stream_events(response)
    assert events[-1] == b"[DONE]"
    assert (await audit_row(response)).outcome == "success"


# --- the hot path ------------------------------------------------------------------------------


async def test_a_warm_governed_request_makes_no_database_query(world):
    def configure() -> None:
        for scope in ("key", "tenant", "tenant-model", "route", "global"):
            add_rate_limit(world, scope, rpm=1000, tpm=10**7)
        for scope in ("key", "tenant", "route"):
            add_budget(world, scope, max_tokens=10**9, max_cost_usd=Decimal(1000))
            add_budget(world, scope, period="monthly", max_tokens=10**9, hard=False)

    await sync_to_async(configure)()
    key = world["acme_key"].plaintext
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


# --- what a partly used budget still affords ---------------------------------------------------


async def spend_some(world: dict, budget_tokens: int) -> int:
    """A tenant budget of `budget_tokens`, a little of it spent by one capped request (which
    also shows the gateway what the fake upstream bills); returns the tokens spent."""
    await sync_to_async(add_budget)(world, "tenant", max_tokens=budget_tokens)
    first = await post(
        world["acme_key"].plaintext, {"model": "gpt", "messages": USER, "max_tokens": 20}
    )
    assert first.status_code == 200
    return orjson.loads(first.content)["usage"]["total_tokens"]


async def test_a_request_without_max_tokens_is_capped_to_what_a_partly_used_budget_affords(
    world, gpt, fake_openai
):
    spent = await spend_some(world, 400)  # 18 of 400 tokens: the default 4096 cannot fit

    response = await post(world["acme_key"].plaintext, {"model": "gpt", "messages": USER})

    assert response.status_code == 200, response.content
    # What is left, less the prompt as the upstream bills it (11 tokens, learnt from the
    # first request), is what the upstream is told it may write.
    affordable = 400 - spent - PROMPT_TOKENS
    assert fake_openai.requests[-1].body["max_completion_tokens"] == affordable
    assert response["x-gateway-max-tokens"] == str(affordable)


async def test_a_request_whose_max_tokens_does_not_fit_what_is_left_is_told_to_lower_it(
    world, gpt, fake_openai
):
    spent = await spend_some(world, 400)

    response = await post(
        world["acme_key"].plaintext, {"model": "gpt", "messages": USER, "max_tokens": 500}
    )

    error = assert_envelope(response, 429, "insufficient_quota", "insufficient_quota")
    assert "exhausted" not in error["message"]
    assert "max_tokens=500" in error["message"]
    assert "total tokens budget of this tenant" in error["message"]
    assert f"At most {400 - spent - PROMPT_TOKENS} output tokens fit now." in error["message"]


async def test_a_budget_too_low_for_the_minimum_output_says_so_rather_than_exhausted(
    world, gpt, fake_openai, settings
):
    settings.GATEWAY_BUDGET_MIN_OUTPUT_TOKENS = 64
    spent = await spend_some(world, 18 + PROMPT_TOKENS + 63)  # 63 output tokens left
    assert spent == 18

    response = await post(world["acme_key"].plaintext, {"model": "gpt", "messages": USER})

    error = assert_envelope(response, 429, "insufficient_quota", "insufficient_quota")
    assert "fewer than 64 output tokens" in error["message"]
    assert "At most 63 output tokens fit now." in error["message"]
    assert "exhausted" not in error["message"]


# --- reservations of requests that never settle ------------------------------------------------


@pytest.fixture
def never_settled(monkeypatch):
    """The process dies after admitting: nothing is ever settled."""

    async def dead(*args: object, **kwargs: object) -> list:
        return []

    monkeypatch.setattr(governor, "settle", dead)


def set_timeouts(provider, **fields: object) -> None:  # type: ignore[no-untyped-def]
    for name, value in fields.items():
        setattr(provider, name, value)
    provider.save()  # through post_save: the snapshot sees it


@pytest.mark.parametrize(
    ("headers", "deadline_s"),
    [
        # Two attempts of 3 s, and the longest wait before the retry (5 s).
        ({}, 2 * 3 + 5),
        # The client's own timeout bounds the whole walk.
        ({"x-gateway-timeout": "4"}, 4),
    ],
)
async def test_a_dead_requests_reservation_stops_counting_after_its_deadline_and_the_margin(
    world, never_settled, settings, headers, deadline_s
):
    settings.GATEWAY_RESERVATION_MARGIN_SECONDS = 2
    await sync_to_async(set_timeouts)(world["stub"], timeout_s=3, max_retries=1)
    budget = await sync_to_async(add_budget)(world, "tenant", max_tokens=10**6)
    before_ms = timezone.now().timestamp() * 1000

    response = await post(world["acme_key"].plaintext, chat(), **headers)

    assert response.status_code == 200
    client = governor._client()
    expiry = await client.zscore("gw:resv:expiry", response["x-request-id"])
    hold_ms = (deadline_s + 2) * 1000
    assert before_ms + hold_ms <= expiry <= timezone.now().timestamp() * 1000 + hold_ms
    reserved = (await budget_counter(budget))["rt"]
    assert reserved > 0

    async def sweep_at(ms: float) -> int:
        """Any admission releases what has expired; then what the budget still holds."""
        await governor.admit(
            request_id="req_sweeper",
            limits=[LimitSpec("global:999", 10**6, None)],
            budgets=[],
            estimated_tokens=0,
            reserve_tokens=0,
            reserve_cost=Decimal(0),
            hold_seconds=1,
            now=datetime.fromtimestamp(ms / 1000, UTC),
        )
        return (await budget_counter(budget))["rt"]

    assert await sweep_at(expiry - 500) == reserved
    assert await sweep_at(expiry + 500) == 0


# --- upstreams that bill more prompt tokens than we count --------------------------------------


async def test_a_prompt_billed_above_our_count_is_reserved_as_billed_once_seen_and_overruns_counted(
    world, gpt, fake_openai, settings, caplog
):
    settings.GATEWAY_PROMPT_ESTIMATE_MARGIN = 1.0  # trust our count until the upstream reports
    ours = count_prompt_tokens(USER, "openai")
    assert ours < PROMPT_TOKENS  # the fake bills 11 prompt tokens for what we count as 9
    budget = await sync_to_async(add_budget)(world, "tenant", max_tokens=10**6)
    key = world["acme_key"].plaintext
    # The fake writes exactly COMPLETION_TOKENS: a cap of that leaves no slack to hide in.
    ask = {"model": "gpt", "messages": USER, "max_tokens": COMPLETION_TOKENS}

    first = await post(key, ask)
    after_first = await budget_counter(budget)
    second = await post(key, ask)
    after_second = await budget_counter(budget)

    assert (first.status_code, second.status_code) == (200, 200)
    # The first reservation held our count: the upstream billed 2 more, an overrun that
    # the budget's counters keep and the log says.
    assert (after_first["ov"], after_first["ovt"]) == (1, PROMPT_TOKENS - ours)
    assert after_first["ovc"] == cost_to_units(Decimal(PROMPT_TOKENS - ours) / 10**6)
    assert "past its reservation" in caplog.text
    # The second was reserved as the upstream bills (11 prompt tokens): no overrun.
    assert after_second["ov"] == 1
    assert after_second["st"] == 2 * (PROMPT_TOKENS + COMPLETION_TOKENS)


async def test_a_long_stream_keeps_its_reservation_past_its_first_hold(world, settings):
    # Held at admission for the first byte (0.3 s) + one idle interval (0.3 s) + the margin
    # (0.4 s); the stream then runs well past that, one chunk every 0.2 s.
    settings.GATEWAY_RESERVATION_MARGIN_SECONDS = 0.4
    await sync_to_async(set_timeouts)(
        world["stub"], timeout_s=0.3, max_retries=0, stub_delay_ms=150
    )
    budget = await sync_to_async(add_budget)(world, "tenant", max_tokens=10**6)
    words = [{"role": "user", "content": "one two three four five six seven eight nine ten"}]
    renewals: list[bool] = []
    original = governor.renew

    async def renew(*args: object, **kwargs: object) -> bool:
        renewals.append(await original(*args, **kwargs))  # type: ignore[arg-type]
        return renewals[-1]

    governor.renew = renew  # type: ignore[method-assign]
    try:
        response = await post(
            world["acme_key"].plaintext, chat(messages=words, stream=True, max_tokens=200)
        )
        held_late = first_chunk_at = None
        async for _part in response.streaming_content:
            now = asyncio.get_running_loop().time()
            first_chunk_at = first_chunk_at or now  # (admitted before it)
            if held_late is None and now - first_chunk_at > 1.2:
                # Past the first hold: a sweep by anyone else must leave it alone.
                await governor.admit(
                    request_id="req_sweeper",
                    limits=[LimitSpec("global:999", 10**6, None)],
                    budgets=[],
                    estimated_tokens=0,
                    reserve_tokens=0,
                    reserve_cost=Decimal(0),
                    hold_seconds=1,
                )
                held_late = (await budget_counter(budget))["rt"]
    finally:
        del governor.renew

    assert held_late, "the stream ended before its first hold did, or lost its reservation"
    assert renewals and all(renewals)
    assert (await budget_counter(budget))["rt"] == 0  # settled at the end
