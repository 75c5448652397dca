"""Traffic for the reconciliation test, generated through the proxy (the in-process ASGI
handler, the real audit writer and ledger) and then placed in time.

Requests are sent now; each phase's audit rows and ledger lines are then moved, by
request id, to the moments the scenario needs (a month that has ended, a price change
on the 15th, a request a second before midnight in the tenant's zone). Moving rows is
the only liberty taken: everything else (the price version that priced a request, the
billable test, the tags, the cost) is what the proxy wrote.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import orjson
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from audit.models import AuditEvent
from audit.writer import audit_writer
from billing.models import UsageLine

USER = [{"role": "user", "content": "Reconcile me"}]
CONCURRENCY = 16


@dataclass(frozen=True)
class Call:
    key: str
    route: str
    tags: dict[str, str] | None = None
    stream: bool = False
    cancel: bool = False  # read the first chunk of the stream, then hang up
    question: str = "Reconcile me"


@dataclass
class Sent:
    """What a phase sent and what came back, by outcome."""

    request_ids: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def count(self, status: int) -> int:
        return self.statuses.count(status)


async def _one(call: Call) -> tuple[str, int]:
    body: dict = {
        "model": call.route,
        "messages": [{"role": "user", "content": call.question}],
        "stream": call.stream,
    }
    if call.stream:
        body["stream_options"] = {"include_usage": True}
    if call.tags is not None:
        body["x-gateway"] = {"metadata": call.tags}
    response = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps(body),
        content_type="application/json",
        headers={"authorization": f"Bearer {call.key}"},
    )
    if call.stream and response.status_code == 200:
        parts = response.streaming_content
        if call.cancel:
            async for _ in parts:
                break
            await parts.aclose()  # the client hangs up after the first chunk
        else:
            _ = [part async for part in parts]
    return response["x-request-id"], response.status_code


async def send(calls: Sequence[Call]) -> Sent:
    """Every call through the proxy, CONCURRENCY at a time; the audit rows flushed."""
    sent = Sent()
    for start in range(0, len(calls), CONCURRENCY):
        batch = calls[start : start + CONCURRENCY]
        for request_id, status in await asyncio.gather(*(_one(call) for call in batch)):
            sent.request_ids.append(request_id)
            sent.statuses.append(status)
    await sync_to_async(audit_writer.flush)()
    return sent


def spread(request_ids: Iterable[str], moments: Sequence[datetime]) -> None:
    """Move each request's audit row and ledger line to the next of `moments` (cycled)."""
    for request_id, moment in zip(request_ids, itertools.cycle(moments), strict=False):
        AuditEvent.objects.filter(request_id=request_id).update(created_at=moment)
        UsageLine.objects.filter(request_id=request_id).update(created_at=moment)


def every_hour(start: datetime, end: datetime, step: timedelta = timedelta(hours=7)) -> list:
    moments = []
    moment = start
    while moment < end:
        moments.append(moment)
        moment += step
    return moments


def audit_cost(**filters: object) -> Decimal:
    """The sum of the audit rows' costs: what every report must equal to the cent."""
    total = Decimal(0)
    for cost in AuditEvent.objects.filter(**filters).values_list("cost_usd", flat=True):
        total += cost
    return total


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))
