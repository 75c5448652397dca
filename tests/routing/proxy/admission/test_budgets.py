"""Hard and soft budgets: refusals, recorded spend (and its rebuild from the audit rows)
and alerts; through the proxy, in-process (ASGI handler, real database, Redis or the
in-process fakeredis for the counters)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async

from billing.counters import units_to_cost
from billing.models import BudgetAlert
from tests import factories
from tests.conftest import assert_envelope, forget_governance_counters
from tests.routing.proxy.admission.support import (
    CAP,
    add_budget,
    audit_row,
    audit_rows,
    budget_counter,
    chat,
    post,
    prompt_tokens,
)

pytestmark = pytest.mark.django_db(transaction=True)


# --- budgets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "others"),
    [
        ("tenant", [("acme's second key", "echo", 429), ("globex", "echo", 200)]),
        ("key", [("acme's second key", "echo", 200), ("acme", "other", 429)]),
        ("route", [("acme", "other", 200), ("globex", "echo", 429)]),
    ],
)
async def test_an_exhausted_hard_budget_is_insufficient_quota(personas, keys, scope, others):
    reserve = prompt_tokens() + CAP
    # Room for two reservations: two requests' real spend plus a third reservation is not.
    await sync_to_async(add_budget)(personas, scope, max_tokens=2 * reserve)
    key = personas.acme.plaintext_key

    first, second, third = [await post(key, chat()) for _ in range(3)]

    assert (first.status_code, second.status_code) == (200, 200)
    error = assert_envelope(third, 429, "insufficient_quota", "insufficient_quota")
    assert f"total tokens budget of this {scope}" in error["message"]
    assert third["x-should-retry"] == "false"
    assert "retry-after" not in third
    row = await audit_row(third)
    assert (row.outcome, row.status_code, row.error_type) == ("rejected", 429, "insufficient_quota")
    for who, route, status in others:
        response = await post(keys[who], chat(route))
        assert response.status_code == status, (who, route)


async def test_recorded_spend_is_the_audit_rows_sum_and_stays_under_a_hard_cost_budget(personas):
    budget = await sync_to_async(add_budget)(personas, "tenant", max_cost_usd=Decimal("0.0001"))
    key = personas.acme.plaintext_key

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
    await forget_governance_counters()
    response = await post(key, chat())
    assert_envelope(response, 429, "insufficient_quota", "insufficient_quota")
    rebuilt = await budget_counter(budget)
    assert (units_to_cost(rebuilt["sc"]), rebuilt["st"]) == (spent_cost, spent_tokens)


async def test_a_free_models_tokens_are_recorded_against_a_token_budget(personas):
    free = await sync_to_async(factories.make_model)(
        personas.provider,
        "free",
        input_per_million="0",
        output_per_million="0",
    )
    await sync_to_async(factories.make_route)("free", free)
    budget = await sync_to_async(add_budget)(personas, "tenant", max_tokens=10**6)

    response = await post(personas.acme.plaintext_key, chat("free"))

    assert response.status_code == 200
    row = await audit_row(response)
    assert row.cost_usd == 0 and row.total_tokens > 0
    counter = await budget_counter(budget)
    assert (counter["st"], counter["rt"]) == (row.total_tokens, 0)


async def test_a_soft_budget_never_refuses_and_records_alerts_at_50_80_and_100_percent(
    personas, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    budget = await sync_to_async(add_budget)(personas, "tenant", max_tokens=100, hard=False)
    key = personas.acme.plaintext_key

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
