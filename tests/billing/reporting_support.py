"""Data for the report, export and billing API tests: roll-up rows and ledger lines made
directly (the roll-up itself is billing.rollups', tested on its own)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import count
from typing import Any

from django.utils import timezone

from billing.models import DailyUsage, UsageLine
from tenants.models import Tenant

_request_ids = count(1)


def tags(**values: str) -> str:
    """A tag set as DailyUsage keeps it: canonical JSON, "" for none."""
    return json.dumps(values, sort_keys=True, separators=(",", ":")) if values else ""


def usage(
    tenant: Tenant,
    day: date,
    *,
    cost: str = "0.0010000000",
    requests: int = 1,
    prompt: int = 100,
    completion: int = 50,
    cached: int = 0,
    reasoning: int = 0,
    **fields: Any,
) -> DailyUsage:
    values: dict[str, Any] = {
        "key_prefix": "gwk_acme0001",
        "api_key_id": 1,
        "route": "chat",
        "route_id": 1,
        "provider": "openai",
        "model": "gpt-4o",
        "price_version_id": 1,
        "tags": "",
        "built_at": timezone.now(),
    }
    values.update(fields)
    return DailyUsage.objects.create(
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        day=day,
        requests=requests,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        total_tokens=prompt + completion,
        cost_usd=Decimal(cost),
        **values,
    )


def line(tenant: Tenant | None, created_at: datetime, **fields: Any) -> UsageLine:
    values: dict[str, Any] = {
        "request_id": f"req_{next(_request_ids):08d}",
        "tenant_id": tenant.id if tenant else None,
        "tenant_slug": tenant.slug if tenant else "",
        "api_key_id": 1,
        "key_prefix": "gwk_acme0001",
        "route_id": 1,
        "route": "chat",
        "provider": "openai",
        "model": "gpt-4o",
        "price_version_id": 3,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "cached_tokens": 20,
        "reasoning_tokens": 10,
        "total_tokens": 150,
        "cost_usd": Decimal("0.0012345678"),
        "metadata": {"tags": {"team": "search"}, "user": "end-user-42"},
        "outcome": "success",
    }
    values.update(fields)
    return UsageLine.objects.create(created_at=created_at, **values)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)
