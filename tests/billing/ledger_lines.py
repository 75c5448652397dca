"""Ledger lines made directly, for the roll-up, close and statement tests: a tenant with
one priced model, and lines at chosen moments."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.models import DailyUsage, PriceVersion, UsageLine
from providers.models import Provider, ProviderModel
from tenants.models import Tenant
from tests import factories

_ids = itertools.count(1)


@dataclass(frozen=True)
class Priced:
    model: ProviderModel
    version: PriceVersion


def priced_model(name: str = "gpt-x", *, provider: str = "openai", **prices: str) -> Priced:
    """A provider model and its first price version (input 1.00, output 2.00 per 1M unless
    told), made by the price book's signal."""
    found = Provider.objects.filter(name=provider).first()
    model = factories.make_model(found or factories.make_provider(provider), name, **prices)
    return Priced(model, PriceVersion.objects.get(provider_model=model))


def local(text: str, zone: str = "UTC") -> datetime:
    """'2026-01-31 23:59:59' in `zone`, aware."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def line(
    tenant: Tenant,
    at: datetime,
    priced: Priced | None = None,
    *,
    prompt: int = 1000,
    completion: int = 500,
    cached: int = 0,
    tags: dict[str, Any] | None = None,
    **fields: Any,
) -> UsageLine:
    """A ledger line, costed at its version's list prices as the proxy does."""
    cost = Decimal(0)
    if priced is not None:
        version = priced.version
        cached_price = version.cached_input_per_million
        cost = (
            (prompt - cached) * version.input_per_million
            + cached * (version.input_per_million if cached_price is None else cached_price)
            + completion * version.output_per_million
        ) / Decimal(1_000_000)
    values: dict[str, Any] = {
        "request_id": f"req_{next(_ids)}_{tenant.slug}",
        "created_at": at,
        "tenant_id": tenant.id,
        "tenant_slug": tenant.slug,
        "api_key_id": 1,
        "key_prefix": "gw_test",
        "route_id": 1,
        "route": "chat",
        "provider": priced.model.provider.name if priced else "local",
        "model": priced.model.name if priced else "echo",
        "price_version_id": priced.version.id if priced else None,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        "total_tokens": prompt + completion,
        "cost_usd": cost.quantize(Decimal("1E-10")),
        "metadata": {"tags": tags} if tags is not None else {},
        "outcome": "success",
    }
    values.update(fields)
    return UsageLine.objects.create(**values)


def rollup_rows(**filters: Any) -> list[dict[str, Any]]:
    """The roll-up rows, every column but the id and built_at, in a stable order."""
    fields = [f.name for f in DailyUsage._meta.concrete_fields if f.name not in ("id", "built_at")]
    return list(DailyUsage.objects.filter(**filters).order_by(*fields).values(*fields))


def rolled_up(**filters: Any) -> tuple[int, int, Decimal]:
    """(requests, total tokens, cost) in the roll-up rows."""
    rows = rollup_rows(**filters)
    return (
        sum(row["requests"] for row in rows),
        sum(row["total_tokens"] for row in rows),
        sum((row["cost_usd"] for row in rows), Decimal(0)),
    )
