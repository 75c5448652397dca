"""A request is priced with the price book's version in force at its start, and a
scheduled price takes effect at its time, with no rebuild of the snapshot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from billing.models import PriceVersion, UsageLine
from billing.services import price_version_create
from providers.base import Price, Target
from routing.snapshot import snapshots
from tests.routing.proxy.test_handler import USER, audit_rows, post

JUNE = datetime(2026, 6, 1, tzinfo=UTC)


def _target(*later: Price) -> Target:
    return Target(
        provider_id=1,
        provider_name="p",
        kind="stub",
        base_url="",
        api_key_env="",
        model="m",
        input_per_million=Decimal(1),
        output_per_million=Decimal(2),
        price_version_id=10,
        later_prices=later,
    )


def test_a_target_prices_each_moment_with_the_version_in_force():
    mid_month = Price(11, JUNE + timedelta(days=15), Decimal(3), Decimal(4), Decimal("0.5"))
    next_month = Price(12, JUNE + timedelta(days=30), Decimal(5), Decimal(6))
    target = _target(mid_month, next_month)
    assert target.price_at(JUNE).version_id == 10
    assert target.price_at(JUNE + timedelta(days=15)).version_id == 11
    assert target.price_at(JUNE + timedelta(days=20)).version_id == 11
    assert target.price_at(JUNE + timedelta(days=31)).version_id == 12
    # 1M prompt tokens, 1M completion tokens
    assert target.cost(10**6, 10**6, at=JUNE) == 3
    assert target.cost(10**6, 10**6, at=JUNE + timedelta(days=16)) == 7
    # Cached input at the cached price where the version has one, else at the input price.
    assert target.cost(10**6, 0, 10**6, at=JUNE + timedelta(days=16)) == Decimal("0.5")
    assert target.cost(10**6, 0, 10**6, at=JUNE + timedelta(days=31)) == 5
    assert target.highest_prices == (Decimal(5), Decimal(6))


def _cost(row, version: PriceVersion) -> Decimal:
    return (
        row.prompt_tokens * version.input_per_million
        + row.completion_tokens * version.output_per_million
    ) / 1_000_000


@pytest.mark.django_db(transaction=True)
async def test_a_scheduled_price_takes_effect_at_its_time_without_a_rebuild(personas):
    key = personas.acme.plaintext_key
    model = personas.model
    soon = timezone.now() + timedelta(seconds=1.5)
    scheduled = await sync_to_async(price_version_create)(
        provider_model=model,
        input_per_million=Decimal(30),
        output_per_million=Decimal(60),
        effective_from=soon,
    )
    first = await sync_to_async(
        lambda: PriceVersion.objects.filter(provider_model=model).order_by("effective_from")[0]
    )()
    assert (await post(key, {"model": "echo", "messages": USER})).status_code == 200
    snapshot = await snapshots.aget()
    await asyncio.sleep(max((soon - timezone.now()).total_seconds(), 0) + 0.05)
    assert (await post(key, {"model": "echo", "messages": USER})).status_code == 200
    assert await snapshots.aget() is snapshot  # the same snapshot priced both
    before, after = await audit_rows()
    assert before.cost_usd == _cost(before, first)
    assert after.cost_usd == _cost(after, scheduled)
    assert after.cost_usd > before.cost_usd
    # The ledger says which version priced each request.
    ledger = await sync_to_async(
        lambda: dict(UsageLine.objects.values_list("request_id", "price_version_id"))
    )()
    assert ledger == {before.request_id: first.id, after.request_id: scheduled.id}
    assert (before.price_version_id, after.price_version_id) == (first.id, scheduled.id)


@pytest.mark.django_db(transaction=True)
async def test_a_price_changed_now_prices_the_next_request(personas):
    key = personas.acme.plaintext_key
    assert (await post(key, {"model": "echo", "messages": USER})).status_code == 200
    version = await sync_to_async(price_version_create)(
        provider_model=personas.model, input_per_million=Decimal(15), output_per_million=Decimal(1)
    )
    assert (await post(key, {"model": "echo", "messages": USER})).status_code == 200
    _, after = await audit_rows()
    assert after.cost_usd == _cost(after, version)
