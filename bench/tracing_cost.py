"""CPU per proxy request with tracing off and on, and before tracing and JSON logs existed.

    .venv/bin/python bench/tracing_cost.py [--before DIR] [--rounds 3] [--requests 4000]
    .venv/bin/python bench/tracing_cost.py --micro

The first form starts the fake upstream (bench/upstream.py) and a fake OTLP collector (a
tiny HTTP server answering 200), seeds the database like `make bench` does (a tenant with
a rate limit and a hard budget, so every request is admitted and settled in Redis), then
runs each configuration in a fresh process, alternating, `--rounds` times:

- `before`: the tree in `--before` (a checkout of the commit before this work), if given;
- `off`: this tree, tracing off (no OTLP endpoint);
- `sdk`: tracing on, the batch processor handing spans to an exporter that drops them:
  the SDK's spans without their encoding;
- `otlp`: tracing on as in production: OTEL_EXPORTER_OTLP_ENDPOINT set, OTLP/HTTP
  (protobuf) to the fake collector, batched;
- `otlp10`: the same, one trace in ten sampled (OTEL_TRACES_SAMPLER=
  parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.1).

Each process drives the real ASGI application (gateway_project.asgi, the proxy's handler)
in-process with `--concurrency` requests in flight on uvloop, non-streamed chat
completions, and reports the process's CPU (every thread: the batch exporter's included)
per request: `--requests` requests after a warm-up, in ten batches, the least of the
batches (on a shared machine, what others run only ever adds) and their median. The audit log is off
(AUDIT_ENABLED=0): its writer's cost does not depend on tracing and only adds noise.

`--micro` times, in this process, what the request path runs with tracing off that it did
not run before: the log context (open, bind, tenant, route), the tracing checks at each
stage and the request-finished DEBUG line (not emitted at INFO); then the same with
tracing on, the spans of one request (four of them, their attributes, the traceparent),
with every request sampled and with none.

Database and Redis: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/h_tracing)
and BENCH_REDIS_URL (default redis://127.0.0.1:6379/12); the Redis database's gw:* keys
are deleted first.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/h_tracing")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
BATCHES = 10  # per process: its CPU per request is the least of the batches'

BODY = {"model": "bench", "messages": [{"role": "user", "content": "Hello, how are you?"}]}
COLLECTOR = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env(workdir: Path, **extra: str) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTEST_VERSION"
    }
    base.update(
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        SECRET_KEY="bench-only-secret-key-not-for-production-0123456789",
        DEBUG="0",
        GATEWAY_ENV_FILE="",
        GATEWAY_STATE_DIR=str(workdir / "state"),
        AUDIT_ENABLED="0",
        BENCH_UPSTREAM_KEY="sk-bench-upstream",
        **extra,
    )
    return base


def manage(args: list[str], workdir: Path) -> str:
    done = subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env(workdir), capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def seed(workdir: Path, upstream_port: int) -> str:
    config = workdir / "gateway.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            providers:
              - name: bench-upstream
                kind: openai_compatible
                base_url: http://127.0.0.1:{upstream_port}/v1
                api_key_env: BENCH_UPSTREAM_KEY
                models:
                  - name: bench-model
                    input_per_million: "0.15"
                    output_per_million: "0.60"
            tenants:
              - slug: bench
                name: Benchmark
                rate_limits:
                  - {{rpm: 100000000, tpm: 100000000000}}
                budgets:
                  - {{period: monthly, max_cost_usd: "10000000.00", hard: true}}
            routes:
              - name: bench
                tenant: bench
                targets:
                  - {{provider: bench-upstream, model: bench-model}}
            """
        )
    )
    manage(["migrate", "--noinput"], workdir)
    manage(["import_gateway_config", str(config)], workdir)
    return manage(
        ["issue_api_key", "--tenant", "bench", "--name", "tracing-bench"], workdir
    ).strip()


def run_child(tree: Path, mode: str, key: str, workdir: Path, args: argparse.Namespace) -> dict:
    extra = {}
    if mode.startswith("otlp"):
        extra["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{args.collector_port}"
    if mode == "otlp10":
        extra["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        extra["OTEL_TRACES_SAMPLER_ARG"] = "0.1"
    command = [PY, str(Path(__file__).resolve()), "--child", mode, "--tree", str(tree)]
    command += ["--key", key, "--requests", str(args.requests)]
    command += ["--concurrency", str(args.concurrency)]
    done = subprocess.run(
        command, cwd=tree, env=env(workdir, **extra), capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"{mode} run failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(mode: str, key: str, requests: int, concurrency: int) -> dict:
    from gateway_project.asgi import application

    if mode == "sdk":
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from gateway_project.lib import tracing

        class Discard(SpanExporter):
            def export(self, spans: object) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        tracing.install(BatchSpanProcessor(Discard()))
    body = json.dumps(BODY).encode()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", f"Bearer {key}".encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def one() -> None:
        sent = False

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Future()  # no disconnect: cancelled once the answer is sent
            raise AssertionError

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await application(dict(scope), receive, send)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    await worker(300)  # warm: snapshot built, key read, pools open
    gc.collect()
    gc.freeze()
    statuses.clear()
    per_worker = requests // BATCHES // concurrency
    batches = []
    for _ in range(BATCHES):
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
        if mode != "before":
            from gateway_project.lib import tracing

            if tracing._provider is not None:  # the batch's last export belongs in it
                tracing._provider.force_flush()
        cpu1, wall1 = cpu_seconds(), time.perf_counter()
        done = per_worker * concurrency
        batches.append(((cpu1 - cpu0) / done * 1e6, done / (wall1 - wall0)))
    assert statuses == [200] * per_worker * concurrency * BATCHES, set(statuses)
    cpu = sorted(batch[0] for batch in batches)
    return {
        "mode": mode,
        # The least disturbed batch: on a shared machine, others' work only ever adds.
        "cpu_us_per_request": round(cpu[0], 1),
        "median_cpu_us_per_request": round(statistics.median(cpu), 1),
        "requests_per_s": round(max(batch[1] for batch in batches)),
    }


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(args.tree))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import uvloop

    result = uvloop.run(drive(args.child, args.key, args.requests, args.concurrency))
    print(json.dumps(result))


def micro() -> None:
    """The request path's additions with tracing off, timed on their own; then the spans
    of one request with tracing on (a batch processor, an exporter that drops them), every
    request sampled and none."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    import logging
    import timeit
    from decimal import Decimal

    import django

    django.setup()
    from django.test import RequestFactory
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from gateway_project.lib import logs
    from gateway_project.lib import tracing as lib_tracing
    from providers.base import Target
    from routing.proxy import tracing
    from routing.proxy.exchange import Exchange

    request = RequestFactory().post("/v1/chat/completions")
    request.request_id = "req_0"
    target = Target(1, "p", "openai", "http://127.0.0.1:9/v1", "", "m", Decimal(0), Decimal(0))
    result = {"choices": [{"finish_reason": "stop"}], "model": "m"}
    row = Exchange(request=request).audit_row(outcome="success", status=200, error=None)
    log = logging.getLogger("routing.proxy.exchange")
    log.setLevel(logging.INFO)
    assert not lib_tracing.ENABLED

    def request_path() -> None:
        """What this work added to a request, as the stages call it."""
        exchange = Exchange(request=request)
        logs.open_request()  # asgi.py
        logs.bind_request("req_0")  # RequestIdMiddleware
        logs.note(tenant="bench")  # tenants/auth.py
        logs.note(route="bench")  # handler.resolve_route
        tracing.start_request(exchange)  # serve_recorded
        with tracing.stage(exchange, "gateway.admission"):
            pass
        with tracing.attempt(exchange, target, index=0, number=1):
            if lib_tracing.ENABLED:  # providers/calls.py
                lib_tracing.with_trace_headers({})
        tracing.answered(exchange, result)  # _json_answer
        if exchange.trace is not None:  # Exchange.record
            tracing.end_request(exchange, row)
        log.debug("request finished: %s %d in %d ms (%s/%s, %d attempts)", "s", 1, 2, "", "", 1)
        with tracing.stage(exchange, "gateway.settlement"):
            pass

    def baseline() -> None:
        Exchange(request=request)

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    def per_request(number: int) -> float:
        spent = min(timeit.repeat(request_path, number=number, repeat=5))
        base = min(timeit.repeat(baseline, number=number, repeat=5))
        return (spent - base) / number * 1e6

    print(f"tracing off:                 {per_request(100_000):7.2f} us per request")
    lib_tracing.install(BatchSpanProcessor(Discard()))
    print(f"tracing on, all sampled:     {per_request(5_000):7.2f} us per request")
    lib_tracing.shutdown()
    os.environ["OTEL_TRACES_SAMPLER"] = "always_off"
    lib_tracing.install(BatchSpanProcessor(Discard()))
    print(f"tracing on, none sampled:    {per_request(20_000):7.2f} us per request")
    lib_tracing.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout of the tree before this work")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--modes", default="before,off,sdk,otlp,otlp10")
    parser.add_argument("--micro", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.micro:
        micro()
        return
    if args.child:
        child(args)
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for name in client.scan_iter(match="gw:*"):
        client.delete(name)
    workdir = Path(tempfile.mkdtemp(prefix="tracing-bench-"))
    upstream_port, args.collector_port = free_port(), free_port()
    processes = [
        subprocess.Popen([PY, str(ROOT / "bench" / "upstream.py"), "--port", str(upstream_port)]),
        subprocess.Popen([PY, "-c", COLLECTOR, str(args.collector_port)]),
    ]
    try:
        time.sleep(1)
        key = seed(workdir, upstream_port)
        modes = [m for m in args.modes.split(",") if m != "before" or args.before]
        results: dict[str, list[dict]] = {mode: [] for mode in modes}
        for round_ in range(args.rounds):
            for mode in modes:
                tree = args.before if mode == "before" else ROOT
                result = run_child(tree, mode, key, workdir, args)
                results[mode].append(result)
                print(
                    f"round {round_ + 1} {mode:7s} {result['cpu_us_per_request']:8.1f} us CPU"
                    f"/request (median batch {result['median_cpu_us_per_request']:.1f})",
                    flush=True,
                )
        print("\nCPU per request, the median over the rounds of each process's least batch:")
        for mode, runs in results.items():
            cpu = statistics.median(r["cpu_us_per_request"] for r in runs)
            print(
                f"  {mode:7s} {cpu:8.1f} us   (runs: "
                f"{', '.join(str(r['cpu_us_per_request']) for r in runs)})"
            )
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
