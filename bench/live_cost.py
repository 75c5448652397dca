"""What the live traffic page costs the proxy (bench/README.md, "The live traffic page").

    python bench/live_cost.py micro
    python bench/live_cost.py server --before-tree DIR [--rounds 3] [--rate 300] [--duration 15]

`micro`: in this process, the time of one `request_finished(row)` call: the function as
it was before the page (empty), the page's with nobody watching (a flag test), and with
somebody watching (the row queued; then, apart, the batch published to an in-memory
channel layer with one member, per row).

`server`: CPU per request of a real gateway worker (one uvicorn worker, uvloop, httptools,
Postgres, Redis, governance and audit on, as `make serve` runs it) at a fixed request rate
from bench/client.py, against bench/upstream.py. Three configurations, alternated round by
round: the tree before the page (`--before-tree`, e.g. `git archive <commit> | tar -x`),
this tree with nobody watching, and this tree with one watcher on /admin/live/stream/ (a
logged-in superuser's session, read by a thread of this script: the worker's cost of
watching, its consumer included, is in the figure). CPU is the worker's utime + stime from
/proc over the measured run, divided by the requests answered.

Uses LIVE_BENCH_DATABASE_URL (migrated and seeded here, not dropped) and
LIVE_BENCH_REDIS_URL (flushed before each configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
DATABASE_URL = os.environ.get(
    "LIVE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gw_bench_live"
)
REDIS_URL = os.environ.get("LIVE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
# run.py's helpers read these when imported.
os.environ["BENCH_DATABASE_URL"] = DATABASE_URL
os.environ["BENCH_REDIS_URL"] = REDIS_URL
sys.path.insert(0, str(BENCH))

import run  # noqa: E402

PASSWORD = "bench-live-password"


# --- micro -------------------------------------------------------------------------------------
def micro() -> dict:
    import asyncio
    from datetime import UTC, datetime
    from decimal import Decimal

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ["GATEWAY_ENV_FILE"] = ""
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))  # this tree's apps, whatever the virtualenv points at
    import django

    django.setup()
    from django.conf import settings

    from audit.row import AuditRow
    from routing.live.feed import GROUP, live_feed
    from routing.proxy.finished import request_finished

    settings.LIVE_TRAFFIC_QUEUE_MAX = 10**9
    row = AuditRow(
        request_id="req_bench", created_at=datetime.now(UTC), tenant_slug="bench", route_id=1,
        route="bench", provider="bench-upstream", model="bench-model", outcome="success",
        status_code=200, latency_ms=3, prompt_tokens=14, completion_tokens=9, total_tokens=23,
        cost_usd=Decimal("0.0000075"), prompt=[{"role": "user", "content": "hi"}],
    )  # fmt: skip

    def before(row: AuditRow) -> None:
        """request_finished as it was before the page: a docstring."""

    n = 200_000
    live_feed.start_checking()  # without REDIS_URL: no thread, the local count only

    def best(stmt) -> float:
        return min(timeit.repeat(stmt, number=n, repeat=5)) / n * 1e9

    out = {
        "before_ns": best(lambda: before(row)),
        "idle_ns": best(lambda: request_finished(row)),
    }

    async def watched() -> tuple[float, float]:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(GROUP, channel)
        live_feed.watcher_joined()
        count = 20_000
        start = time.perf_counter()
        for _ in range(count):
            request_finished(row)
        queued = (time.perf_counter() - start) / count * 1e9
        live_feed._flush.cancel()  # publish here instead, timed apart
        start = time.perf_counter()
        await live_feed.flush()
        published = (time.perf_counter() - start) / count * 1e9
        live_feed.watcher_left()
        return queued, published

    out["watched_queue_ns"], out["watched_publish_ns_per_row"] = asyncio.run(watched())
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "gw:bench-asgi"},
        }
    }  # the pytest-style override: channels drops its cached layer on setting_changed
    from django.core.signals import setting_changed

    setting_changed.send(sender=None, setting="CHANNEL_LAYERS", value=None, enter=True)
    _, out["watched_publish_redis_ns_per_row"] = asyncio.run(watched())

    # The watcher's side, per event: its filter, and the event as an SSE chunk.
    from routing.live.consumers import sse_event
    from routing.live.events import LiveFilter, live_event

    event, wanted = live_event(row), LiveFilter(status="ok")
    out["consumer_ns_per_event"] = best(lambda: wanted.matches(event) and sse_event(event))
    return out


# --- server ------------------------------------------------------------------------------------
def start_gateway(tree: Path, workdir: Path, name: str):
    port = run.free_port()
    env = run.django_env(workdir)
    run.redis_client().flushdb()
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [
            PY, "-m", "uvicorn", "gateway_project.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--lifespan", "on", "--timeout-graceful-shutdown", "10",
        ],
        cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            run.urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        raise RuntimeError(f"{name} did not start: see {workdir / (name + '.log')}")
    return proc, port  # one worker: uvicorn serves in this very process


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    proc.wait(30)


def rate(port: int, key: str, rate_: float, duration: float) -> dict:
    out = subprocess.run(
        [PY, str(BENCH / "client.py"), "rate", f"http://127.0.0.1:{port}/v1/chat/completions",
         "--key", key, "--rate", str(rate_), "--duration", str(duration)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


class Watcher(threading.Thread):
    """One browser on the live page: a session cookie and the event stream, read through."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        import httpx

        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        form = self.client.get("/admin/login/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
        self.client.post(
            "/admin/login/",
            data={"csrfmiddlewaretoken": token, "username": "bench-live", "password": PASSWORD},
            headers={"referer": f"http://127.0.0.1:{port}/admin/login/"},
        )
        self.events = 0
        self.opened = threading.Event()

    def run(self) -> None:
        import httpx

        try:
            with self.client.stream("GET", "/admin/live/stream/", timeout=None) as response:
                assert response.status_code == 200, response.status_code
                self.opened.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events += 1
        except httpx.HTTPError:
            pass

    def close(self) -> None:
        self.client.close()


def measure(tree: Path, workdir: Path, name: str, key: str, args, watch: bool) -> dict:
    proc, port = start_gateway(tree, workdir, name)
    try:
        worker = proc.pid
        rate(port, key, args.rate, 3)  # warm: snapshot, pools, budget counters
        watcher = None
        if watch:
            watcher = Watcher(port)
            watcher.start()
            watcher.opened.wait(10)
            time.sleep(1.5)
        cpu0 = run.cpu_seconds(worker)
        result = rate(port, key, args.rate, args.duration)
        cpu1 = run.cpu_seconds(worker)
        out = {
            "config": name,
            "ok": result["ok"],
            "errors": result["errors"],
            "cpu_us_per_request": round((cpu1 - cpu0) / max(result["ok"], 1) * 1e6, 1),
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
        }
        if watcher is not None:
            time.sleep(0.5)
            out["events_seen"] = watcher.events
            watcher.close()
        print(json.dumps(out), flush=True)
        return out
    finally:
        stop(proc)


def server(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="live-bench-"))
    upstream = subprocess.Popen(
        [PY, str(BENCH / "upstream.py"), "--port", str(port := run.free_port())],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        run.manage(["migrate", "--noinput"], workdir)
        key = run.seed(workdir, port)
        env = {**run.django_env(workdir), "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
        subprocess.run(
            [PY, "manage.py", "createsuperuser", "--noinput", "--username", "bench-live",
             "--email", "bench@example.com"],
            cwd=ROOT, env=env, capture_output=True,
        )  # fmt: skip
        configs = [
            (Path(args.before_tree), "before", False),
            (ROOT, "nobody watching", False),
            (ROOT, "one watcher", True),
        ]
        results: dict[str, list[dict]] = {name: [] for _, name, _ in configs}
        for _ in range(args.rounds):
            for tree, name, watch in configs:
                results[name].append(measure(tree, workdir, name, key, args, watch))
        summary = {
            name: statistics.median(r["cpu_us_per_request"] for r in runs)
            for name, runs in results.items()
        }
        return {"rate": args.rate, "duration_s": args.duration, "median_cpu_us": summary}
    finally:
        os.killpg(upstream.pid, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description="what the live traffic page costs")
    parser.add_argument("mode", choices=["micro", "server"])
    parser.add_argument("--before-tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--duration", type=float, default=15)
    args = parser.parse_args()
    out = micro() if args.mode == "micro" else server(args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
