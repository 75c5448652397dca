"""The admission tests' helpers: requests through the in-process ASGI handler, audit rows,
budget counters, and limits and budgets for a persona (the fixtures are in conftest.py)."""

from __future__ import annotations

import orjson
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from audit.models import AuditEvent
from audit.writer import audit_writer
from billing import services
from billing.counters import governor
from billing.models import Budget
from billing.periods import period_for
from billing.services import RateLimitSpec, Subject, budget_create, rate_limit_create
from providers.tokens import count_prompt_tokens
from tests.personas import Personas

USER = [{"role": "user", "content": "Hello there"}]
CAP = 10  # the max_tokens most requests here send: it bounds what they reserve


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


def owner(personas: Personas, scope: str):
    return {
        "key": personas.acme.key,
        "tenant": personas.acme.tenant,
        "tenant-model": personas.acme.tenant,
        "route": personas.route,
        "global": None,
    }[scope]


def add_rate_limit(personas: Personas, scope: str, **spec: int) -> None:
    model_name = "echo" if scope == "tenant-model" else ""
    rate_limit_create(
        subject=Subject.of(owner(personas, scope)),
        spec=RateLimitSpec(model_name=model_name, **spec),
    )


def add_budget(personas: Personas, scope: str, **spec: object) -> Budget:
    return budget_create(
        subject=Subject.of(owner(personas, scope)),
        spec=services.BudgetSpec(**{"period": "total", **spec}),
    )


async def stream_events(response) -> list[bytes]:
    raw = b"".join([part async for part in response.streaming_content])
    return [line[6:] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
