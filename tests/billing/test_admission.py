"""The pure parts of the proxy's admission step (billing/admission.py): refusal errors,
threshold alerts, the failure policy when Redis is away."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from billing import admission as admission_step
from billing.admission import _crossed, _refusal_error
from billing.counters import Admission, GovernanceUnavailable, Refusal
from billing.rules import BudgetRule, LimitRule
from gateway_project.lib.errors import GatewayError


def fields(error: GatewayError) -> tuple:
    return error.status, error.type, error.code, error.param


# --- refusal errors ----------------------------------------------------------------------------


def test_an_rpm_refusal_says_when_to_retry():
    refusal = Refusal("rate_limit", "requests", LimitRule("key:7", 60, None), 1500)

    error = _refusal_error(refusal)

    assert fields(error) == (429, "rate_limit_error", "rate_limit_exceeded", None)
    assert error.headers == {
        "retry-after": "2",
        "retry-after-ms": "1500",
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1500ms",
    }
    assert error.message == "Rate limit reached: the API key's limit of 60 requests per minute."


@pytest.mark.parametrize(
    ("name", "detail", "retry_ms", "words"),
    [
        ("key:7", "requests", 1500, "the API key's limit of 5 requests per minute"),
        ("tenant:3", "tokens", 1500, "the tenant's limit of 5 tokens per minute"),
        ("tenant-model:12", "requests", 10, "the tenant's per-model limit of 5 requests"),
        ("route:9", "tokens", None, "the route's limit of 5 tokens per minute"),
        ("global:1", "requests", 10, "the gateway-wide limit of 5 requests per minute"),
    ],
)
def test_a_rate_limit_refusal_says_which_kind_of_limit_in_words_and_no_internal_id(
    name, detail, retry_ms, words
):
    error = _refusal_error(Refusal("rate_limit", detail, LimitRule(name, 5, 5), retry_ms))

    assert words in error.message
    # The only number in the message is the limit's own (5): no database id of any kind.
    assert not any(ch.isdigit() for ch in error.message.replace("5", ""))
    assert not any(name in value or ":" in value for value in error.headers.values())


@pytest.mark.parametrize("retry_ms", [1, 999, 1000, 1001, 60_000])
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(retry_ms):
    error = _refusal_error(Refusal("rate_limit", "requests", LimitRule("key:7", 1, None), retry_ms))

    assert error.headers["retry-after"] == str(max(1, math.ceil(retry_ms / 1000)))
    assert int(error.headers["retry-after"]) * 1000 >= retry_ms


def test_a_tpm_refusal_reports_the_token_limit():
    error = _refusal_error(Refusal("rate_limit", "tokens", LimitRule("tenant:3", 60, 5000), 250))

    assert error.headers == {
        "retry-after": "1",
        "retry-after-ms": "250",
        "x-ratelimit-limit-tokens": "5000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "250ms",
    }
    assert "x-should-retry" not in error.headers


def test_a_request_larger_than_the_tpm_is_told_not_to_retry():
    error = _refusal_error(Refusal("rate_limit", "tokens", LimitRule("tenant:3", None, 100), None))

    assert fields(error) == (429, "rate_limit_error", "rate_limit_exceeded", None)
    assert error.headers["x-should-retry"] == "false"
    assert "retry-after" not in error.headers
    assert "retry-after-ms" not in error.headers
    assert error.headers["x-ratelimit-limit-tokens"] == "100"
    assert "100 tokens per minute" in error.message


@pytest.mark.parametrize("detail", ["tokens", "cost"])
def test_an_exhausted_budget_is_insufficient_quota_and_not_to_be_retried(detail):
    spec = BudgetRule(
        id=1,
        scope="key",
        subject_id=7,
        period="monthly",
        hard=True,
        max_tokens=10,
        max_cost=Decimal(1),
    )

    error = _refusal_error(Refusal("budget", detail, spec))

    assert fields(error) == (429, "insufficient_quota", "insufficient_quota", None)
    assert error.headers == {"x-should-retry": "false"}
    assert error.outcome == "rejected"
    assert f"monthly {detail} budget of this key" in error.message


# --- threshold alerts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "after", "added", "crossed"),
    [
        (100, 49, 10, []),
        (100, 50, 10, [50]),
        (100, 79, 30, [50]),
        (100, 80, 1, [80]),
        (100, 110, 70, [50, 80, 100]),
        (100, 120, 10, []),  # already past every threshold before this request
        (Decimal("0.30"), Decimal("0.24"), Decimal("0.03"), [80]),
        (None, 500, 500, []),
    ],
)
def test_thresholds_are_crossed_once_on_the_way_up(limit, after, added, crossed):
    assert _crossed(limit, after, added, (50, 80, 100)) == crossed


# --- the failure policy when Redis is away ---------------------------------------------------------


@pytest.fixture
def redis_down(monkeypatch):
    async def unavailable(**kwargs: object) -> None:
        raise GovernanceUnavailable("connection refused")

    monkeypatch.setattr(admission_step.governor, "admit", unavailable)


def admit_kwargs(*, limits: list, budgets: list) -> dict:
    return {
        "request_id": "req_test",
        "limits": limits,
        "budgets": budgets,
        "prompt_tokens": 10,
        "tpm_output_tokens": 0,
        "reserve_output_tokens": 10,
        "max_input_price": Decimal(1),
        "max_output_price": Decimal(1),
        "deadline_seconds": 60.0,
    }


BUDGET = BudgetRule(
    id=1, scope="tenant", subject_id=1, period="daily", hard=True, max_tokens=10, max_cost=None
)


async def test_budgets_fail_closed_without_redis_by_default(redis_down, settings):
    settings.GATEWAY_BUDGET_FAILURE_MODE = "closed"

    with pytest.raises(GatewayError) as caught:
        await admission_step.admit(**admit_kwargs(limits=[], budgets=[BUDGET]))

    error = caught.value
    assert fields(error) == (503, "api_error", "governance_unavailable", None)
    assert error.headers == {"retry-after": "1", "retry-after-ms": "1000"}


async def test_rate_limits_fail_open_without_redis_by_default(redis_down, settings):
    settings.GATEWAY_RATE_LIMIT_FAILURE_MODE = "open"

    admission = await admission_step.admit(
        **admit_kwargs(limits=[LimitRule("key:1", 1, None)], budgets=[])
    )

    assert isinstance(admission, Admission)
    assert admission.degraded
    assert admission.limits == [] and admission.budgets == []


async def test_nothing_to_govern_never_reaches_redis(redis_down):
    assert await admission_step.admit(**admit_kwargs(limits=[], budgets=[])) is None


async def test_governance_can_be_switched_off(redis_down, settings):
    settings.GATEWAY_GOVERNANCE_ENABLED = False

    assert await admission_step.admit(**admit_kwargs(limits=[], budgets=[BUDGET])) is None


def budget_refusal(scope: str = "key", *, exhausted: bool, fits: int) -> Refusal:
    spec = BudgetRule(
        id=4, scope=scope, subject_id=9, period="monthly", hard=True, max_tokens=None,
        max_cost=Decimal(1),
    )  # fmt: skip
    return Refusal("budget", "cost", spec, exhausted=exhausted, fitting_output_tokens=fits)


def test_a_budget_whose_worst_case_does_not_fit_says_to_lower_max_tokens_not_exhausted():
    error = _refusal_error(budget_refusal(exhausted=False, fits=300), output_tokens=4000)

    assert fields(error) == (429, "insufficient_quota", "insufficient_quota", None)
    assert error.message == (
        "This request's worst case (its prompt plus max_tokens=4000) costs more than what "
        "remains of the monthly cost budget of this key; set a lower max_tokens. At most 300 "
        "output tokens fit now."
    )


def test_a_request_without_max_tokens_is_told_the_budget_affords_less_than_the_minimum(settings):
    settings.GATEWAY_BUDGET_MIN_OUTPUT_TOKENS = 64
    error = _refusal_error(
        budget_refusal(exhausted=False, fits=20), output_tokens=4096, output_is_ours=True
    )

    assert "affords fewer than 64 output tokens" in error.message
    assert "At most 20 output tokens fit now." in error.message


def test_a_prompt_that_alone_does_not_fit_says_so():
    error = _refusal_error(budget_refusal(exhausted=False, fits=0), output_tokens=10)
    assert "prompt alone costs more than what remains" in error.message


def test_a_shared_route_budget_does_not_tell_how_much_of_it_is_left():
    error = _refusal_error(budget_refusal("route", exhausted=False, fits=300), output_tokens=4000)
    assert "300" not in error.message
    assert "monthly cost budget of this route" in error.message


def test_only_a_budget_with_nothing_left_is_exhausted():
    error = _refusal_error(budget_refusal(exhausted=True, fits=0), output_tokens=10)
    assert error.message == "The monthly cost budget of this key is exhausted."
