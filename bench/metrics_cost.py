"""What the Prometheus metrics cost a request, in CPU: `routing.metrics.recording.record()`
on its own for each kind of audit row, then whole requests through the gateway's ASGI
application in this process (the stub upstream, SQLite, no governance, no audit) with
metrics on and off in alternating rounds; and what one scrape of /metrics costs.

    .venv/bin/python bench/metrics_cost.py [--calls 20000] [--requests 2000] [--rounds 6]

Runs in a throwaway state directory (its own SQLite database and metric files).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(state: Path) -> None:
    os.environ.update(
        GATEWAY_STATE_DIR=str(state),
        GATEWAY_ENV_FILE="",
        DEBUG="0",
        SECRET_KEY="bench-only-secret-key-not-for-production-0123456789",
        ALLOWED_HOSTS="localhost",
        AUDIT_ENABLED="0",
        GATEWAY_GOVERNANCE_ENABLED="0",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "gateway_project.settings"
    import django

    django.setup()


def rows() -> dict:
    """One audit row of each kind, as the proxy hands them over."""
    from audit.row import AuditRow

    now = datetime.now(UTC)
    base = dict(
        created_at=now,
        tenant_id=1,
        tenant_slug="acme",
        api_key_id=1,
        key_prefix="gwk_abcd1234",
        route_id=1,
        route="echo",
        requested_model="echo",
        config_version="v1",
        metadata={},
    )
    served = dict(
        provider="local",
        model="echo",
        attempts=1,
        attempt_log=[{"provider": "local", "model": "echo", "ms": 20, "ok": True}],
        prompt_tokens=25,
        completion_tokens=120,
        total_tokens=145,
        cost_usd=Decimal("0.0007575000"),
        latency_ms=850,
    )
    return {
        "success": AuditRow(request_id="r1", outcome="success", status_code=200, **base, **served),
        "stream": AuditRow(
            request_id="r2",
            outcome="success",
            status_code=200,
            stream=True,
            ttft_ms=120,
            **base,
            **served,
        ),
        "cache hit": AuditRow(
            request_id="r3",
            outcome="success",
            status_code=200,
            prompt_tokens=25,
            completion_tokens=120,
            **{**base, "metadata": {"cache": "exact"}},
        ),
        "rate-limited": AuditRow(
            request_id="r4",
            outcome="rejected",
            status_code=429,
            error_type="rate_limit_exceeded",
            **base,
        ),
        "upstream error": AuditRow(
            request_id="r5",
            outcome="upstream_error",
            status_code=502,
            error_type="upstream_error",
            attempts=2,
            attempt_log=[
                {
                    "provider": "local",
                    "model": "echo",
                    "ms": 5,
                    "ok": False,
                    "kind": "server_error",
                },
                {
                    "provider": "local",
                    "model": "echo",
                    "ms": 5,
                    "ok": False,
                    "kind": "server_error",
                },
            ],
            latency_ms=40,
            **base,
        ),
    }


def per_row(calls: int) -> None:
    from django.conf import settings

    from routing.metrics.recording import record

    print(f"record(row), {calls:,} calls each (CPU per call):")
    for name, row in rows().items():
        results = {}
        for enabled in (True, False):
            settings.GATEWAY_METRICS_ENABLED = enabled
            for _ in range(100):
                record(row)
            start = time.process_time()
            for _ in range(calls):
                record(row)
            results[enabled] = (time.process_time() - start) / calls * 1e6
        settings.GATEWAY_METRICS_ENABLED = True
        print(f"  {name:16s} on {results[True]:6.1f} us   off {results[False]:5.2f} us")


def seed() -> str:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    config = Path(os.environ["GATEWAY_STATE_DIR"]) / "bench.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            version: 1
            providers:
              - name: local
                kind: stub
                models:
                  - {name: echo, input_per_million: "1.50", output_per_million: "6"}
            tenants:
              - {slug: bench, name: Benchmark}
            routes:
              - {name: echo, tenant: bench, targets: [{provider: local, model: echo}]}
            """
        )
    )
    call_command("import_gateway_config", str(config), verbosity=0, stdout=StringIO())
    out = StringIO()
    call_command("issue_api_key", "--tenant", "bench", "--name", "bench", stdout=out)
    return out.getvalue().strip()


async def whole_requests(key: str, requests: int, rounds: int) -> None:
    import httpx
    from django.conf import settings

    from gateway_project.asgi import application

    body = {"model": "echo", "messages": [{"role": "user", "content": "Say something short."}]}
    headers = {"authorization": f"Bearer {key}"}
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:

        async def burst(count: int) -> float:
            start = time.process_time()
            for _ in range(count):
                response = await http.post("/v1/chat/completions", json=body, headers=headers)
                assert response.status_code == 200, response.text
            return (time.process_time() - start) / count * 1e6

        await burst(300)  # snapshot, pools, caches
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for index in range(rounds * 2):
            enabled = index % 4 in (0, 3)  # on, off, off, on, ...: a drift favours neither
            settings.GATEWAY_METRICS_ENABLED = enabled
            cpu[enabled].append(await burst(requests))
        settings.GATEWAY_METRICS_ENABLED = True
        on, off = statistics.median(cpu[True]), statistics.median(cpu[False])
        print(f"whole requests in-process, {rounds} rounds of {requests:,} each way (CPU/request):")
        print(f"  metrics on  {on:7.1f} us  (rounds: {', '.join(f'{v:.0f}' for v in cpu[True])})")
        print(f"  metrics off {off:7.1f} us  (rounds: {', '.join(f'{v:.0f}' for v in cpu[False])})")
        print(f"  added       {on - off:7.1f} us (median of on minus median of off)")

        start_wall, start_cpu = time.perf_counter(), time.process_time()
        scrapes = 20
        for _ in range(scrapes):
            response = await http.get("/metrics")
            assert response.status_code == 200, response.text
        wall = (time.perf_counter() - start_wall) / scrapes * 1e3
        used = (time.process_time() - start_cpu) / scrapes * 1e3
        print(f"one scrape: {wall:.1f} ms wall, {used:.1f} ms CPU, {len(response.content):,} bytes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as state:
        setup(Path(state))
        per_row(args.calls)
        key = seed()
        asyncio.run(whole_requests(key, args.requests, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
