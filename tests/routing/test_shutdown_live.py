"""SIGTERM under load: in-flight requests finish, and every completed request has its
audit row once the process has exited."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from audit.models import AuditEvent
from tests import factories
from tests.live import GatewayProcess

pytestmark = pytest.mark.django_db(transaction=True)
HELLO = [{"role": "user", "content": "hello"}]


def test_sigterm_under_load_loses_no_audit_row(personas):
    slow = factories.make_provider("slow", kind="stub", stub_delay_ms=400)
    factories.make_route("slow", factories.make_model(slow, "echo"))
    key = personas.acme.plaintext_key
    # A long flush interval: rows are still queued when SIGTERM arrives, so the shutdown
    # flush (not the periodic one) has to write them.
    gateway = GatewayProcess(extra_env={"AUDIT_FLUSH_INTERVAL_SECONDS": "30"}).start()

    async def one(client: httpx.AsyncClient, stream: bool) -> tuple[str, int, bool]:
        try:
            response = await client.post(
                f"{gateway.base_url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "slow", "messages": HELLO, "stream": stream},
            )
        except httpx.TransportError:
            return "", 0, False
        complete = response.status_code == 200 and (
            not stream or response.text.rstrip().endswith("data: [DONE]")
        )
        return response.headers.get("x-request-id", ""), response.status_code, complete

    async def load() -> list[tuple[str, int, bool]]:
        async with httpx.AsyncClient(timeout=30) as client:
            tasks = [asyncio.create_task(one(client, i % 2 == 0)) for i in range(60)]
            await asyncio.sleep(0.2)  # all in flight
            gateway.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    started = time.monotonic()
    results = asyncio.run(load())
    gateway.process.wait(30)
    shutdown_seconds = time.monotonic() - started

    completed = [request_id for request_id, status, complete in results if complete]
    assert len(completed) == 60, "in-flight requests should finish during the grace period"
    stored = set(
        AuditEvent.objects.filter(request_id__in=completed).values_list("request_id", flat=True)
    )
    assert stored == set(completed)
    # uvicorn re-raises SIGTERM once it has shut down cleanly, so the exit code is -15.
    assert gateway.process.returncode == -signal.SIGTERM
    assert "Application shutdown complete" in gateway.log()
    assert shutdown_seconds < 10
