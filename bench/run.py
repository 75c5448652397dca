"""`make bench`: the gateway in its production configuration against a fast fake upstream.

One run measures, against calling the fake upstream directly:

- throughput at 16 and 64 connections (wrk, keep-alive, non-streamed requests);
- latency p50/p99 at one connection (wrk) and at a fixed request rate (bench/client.py,
  open loop: wrk2 is not packaged by Debian);
- streaming: time to the first content token, and whether the chunk spacing survives;
- peak RSS (VmHWM) of each uvicorn worker, the audit writer's backlog after the load, and
  where the CPU went during the 16-connection run;
- the same with governance and audit switched off, together and one at a time, to show
  what each layer costs; and LiteLLM's proxy beside it when it is installed.

It prints one Markdown table and writes it to bench/results.md (bench/results.json holds
every raw number). bench/README.md explains each figure. Settings come from the
environment (BENCH_*, listed in README.md); every process it starts is stopped however the
run ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
sys.path.insert(0, str(BENCH))

from client import BODY  # noqa: E402


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


DURATION = float(env("BENCH_DURATION", "10"))  # seconds per measurement
WARMUP = float(env("BENCH_WARMUP", "3"))
RATE = float(env("BENCH_RATE", "200"))  # the fixed request rate
CHUNKS = int(env("BENCH_STREAM_CHUNKS", "20"))
SPACING_MS = float(env("BENCH_STREAM_SPACING_MS", "5"))
WORKERS = int(env("BENCH_WORKERS", "2"))
DATABASE_URL = env("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gw_bench")
REDIS_URL = env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
LAYERS = env("BENCH_LAYERS", "1") != "0"  # also governance-only and audit-only configs
PROFILE = env("BENCH_PROFILE", "0") != "0"  # an extra, unmeasured run under py-spy
# The gateway runs with /metrics recording on (GATEWAY_METRICS_ENABLED) and tracing off
# (no OTEL_EXPORTER_OTLP_ENDPOINT), as issue 15 measures it; BENCH_METRICS=0: metrics off.
METRICS = env("BENCH_METRICS", "1") != "0"
HOLD_STREAMS = int(env("BENCH_HOLD_STREAMS", "1000"))  # open at once in one worker; 0 skips
SCALE_TENANTS = int(env("BENCH_SCALE_TENANTS", "10000"))  # 0 skips the scale column
SCALE_KEYS = int(env("BENCH_SCALE_KEYS", "100000"))
RESULTS_MD = BENCH / "results.md"
RESULTS_JSON = BENCH / "results.json"
UPSTREAM_KEY_ENV = "BENCH_UPSTREAM_API_KEY"
# LiteLLM refuses to start without a master key; without a database it is only compared.
LITELLM_KEY = "sk-bench-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- processes ---------------------------------------------------------------------------------
class Processes:
    """Everything long-running this run starts, each in its own process group, so that
    stopping one stops its children too (uvicorn's workers, LiteLLM's)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen, timeout: float = 20) -> None:
        """SIGTERM to the group (uvicorn drains in-flight requests and the audit queue),
        SIGKILL to whatever is left after `timeout`."""
        pgid = proc.pid  # start_new_session: the leader's pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} ignored SIGTERM for {timeout:g} s; killing its group")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        self.running = [(n, p) for n, p in self.running if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.running)):
            self.stop(proc)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_pids(master: int) -> list[int]:
    """uvicorn's (or LiteLLM's) worker processes: the master's children other than
    multiprocessing's resource tracker; the master itself when it has none."""
    pids = [p for p in children(master) if "resource_tracker" not in cmdline(p)]
    return pids or [master]


def proc_status_kb(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    """CPU seconds of each process still alive (a process that exited drops out)."""
    snapshot: dict[str, dict[int, float]] = {}
    for group, pids in groups.items():
        seconds = {pid: cpu_seconds(pid) for pid in pids}
        snapshot[group] = {pid: value for pid, value in seconds.items() if value is not None}
    return snapshot


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used, all CPUs together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


def pids_named(name: str) -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == name:
                pids.append(int(comm.parent.name))
    return pids


def wait_http(
    url: str, proc: subprocess.Popen, timeout: float, name: str, procs: Processes
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{procs.log_tail(name)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer {url} within {timeout:g} s:\n{procs.log_tail(name)}")


# --- the machine -------------------------------------------------------------------------------
def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "busy_before_pct": machine_busy_pct(1.0),
    }


def machine_busy_pct(seconds: float) -> float:
    """CPU in use by everything else on the machine, sampled before the run starts."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return round(100 * (1 - (idle1 - idle0) / max(1, total1 - total0)), 1)


def versions() -> dict:
    out = {}
    for name in ("django", "uvicorn", "uvloop", "httptools", "httpx"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            out[name] = version(name)
    wrk = shutil.which("wrk")
    if wrk:
        proc = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        out["wrk"] = (proc.stdout + proc.stderr).split("\n")[0].split(" [")[0]
    return out


# --- database, redis, seed ---------------------------------------------------------------------
def db_params(url: str) -> dict:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "password": parts.password or None,
        "dbname": parts.path.lstrip("/"),
    }


def reset_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    params = db_params(url)
    name = params.pop("dbname")
    if not name.startswith(("gw_bench", "bench")):
        raise SystemExit(f"refusing to drop {name!r}: the bench database must be named gw_bench*")
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def sql_scalar(query: str) -> int:
    import psycopg

    with psycopg.connect(**db_params(DATABASE_URL), autocommit=True) as conn:
        return conn.execute(query).fetchone()[0]


def sql_rows(query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(**db_params(DATABASE_URL), autocommit=True) as conn:
        return conn.execute(query).fetchall()


def redis_client():
    import redis

    return redis.Redis.from_url(REDIS_URL)


def redis_script_calls() -> int:
    """EVAL/EVALSHA/FCALL calls the Redis server has served (server-wide)."""
    stats = redis_client().info("commandstats")
    return sum(
        int(value.get("calls", 0))
        for name, value in stats.items()
        if name in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall", "cmdstat_evalsha_ro")
    )


def django_env(workdir: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION",)}
    base.update(
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        SECRET_KEY="bench-only-secret-key-not-for-production-0123456789",
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        GATEWAY_STATE_DIR=str(workdir / "state"),
        PYTHONUNBUFFERED="1",
        **{UPSTREAM_KEY_ENV: "sk-bench-upstream"},
    )
    return base


def django_script(args: list[str], workdir: Path, timeout: float = 300) -> str:
    """Run a Python script of the project with the bench's Django settings; its stdout."""
    proc = subprocess.run(
        [PY, *args],
        cwd=ROOT,
        env=django_env(workdir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def manage(args: list[str], workdir: Path) -> str:
    return django_script(["manage.py", *args], workdir)


def seed(workdir: Path, upstream_port: int) -> str:
    """A tenant with a generous rate limit and a hard monthly budget that never refuses (so
    governance does its real work on every request), an openai_compatible provider at the
    fake upstream, a route `bench`; returns a new API key."""
    config = workdir / "bench-gateway.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            providers:
              - name: bench-upstream
                kind: openai_compatible
                base_url: http://127.0.0.1:{upstream_port}/v1
                api_key_env: {UPSTREAM_KEY_ENV}
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
    manage(["import_gateway_config", str(config)], workdir)
    return manage(["issue_api_key", "--tenant", "bench", "--name", "benchmark"], workdir).strip()


# --- load generators ---------------------------------------------------------------------------
def wrk_script(workdir: Path, keys: list[str]) -> Path:
    """wrk's request script: each request takes the next of `keys` in turn."""
    body = json.dumps(BODY)
    path = workdir / f"wrk-{abs(hash(tuple(keys)))}.lua"
    path.write_text(
        textwrap.dedent(
            """\
            wrk.method = "POST"
            wrk.body = [[%s]]
            wrk.headers["Content-Type"] = "application/json"
            keys = {%s}
            counter = 0
            request = function()
              counter = counter + 1
              wrk.headers["Authorization"] = "Bearer " .. keys[counter %% #keys + 1]
              return wrk.format()
            end
            done = function(summary, latency, requests)
              local e = summary.errors
              io.write(string.format(
                'BENCHJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,' ..
                '"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,' ..
                '"p99_us":%%d,"max_us":%%d}\\n',
                summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
                e.timeout, latency:percentile(50), latency:percentile(90),
                latency:percentile(99), latency.max))
            end
            """
        )
        % (body, ", ".join(f'"{key}"' for key in keys))
    )
    return path


def wrk(url: str, script: Path, *, connections: int, seconds: float) -> dict:
    threads = 1 if connections == 1 else 2
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"^BENCHJSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(match.group(1))
    seconds_run = data["duration_us"] / 1e6
    errors = data["connect"] + data["read"] + data["write"] + data["timeout"] + data["status"]
    return {
        "connections": connections,
        "requests": data["requests"],
        "rps": data["requests"] / seconds_run,
        "p50_ms": data["p50_us"] / 1000,
        "p90_ms": data["p90_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "max_ms": data["max_us"] / 1000,
        "errors": errors,
        "non_2xx": data["status"],
        "wrk_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }


def client(mode: str, url: str, key: str, *extra: str) -> dict:
    cmd = [PY, str(BENCH / "client.py"), mode, url, "--key", key, "--duration", f"{DURATION:g}"]
    proc = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=DURATION + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"client {mode} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout)


# --- one target --------------------------------------------------------------------------------
@dataclass
class Target:
    name: str  # results key
    label: str  # column title
    base_url: str  # .../v1
    key: str
    master_pid: int | None = None  # for RSS and CPU
    gateway: bool = False  # ours: audit rows are counted
    audited: bool = False
    full: bool = True  # every measurement, or only c16 and c1
    keys: list[str] | None = None  # wrk rotates over these (default: [key])
    warmup_s: float = WARMUP
    results: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"


def measure(target: Target, workdir: Path, upstream_pid: int, procs: Processes) -> dict:
    res = target.results
    script = wrk_script(workdir, target.keys or [target.key])
    sent = 0
    audit_before = sql_scalar("SELECT count(*) FROM audit_auditevent") if target.gateway else 0
    scripts_before = redis_script_calls()

    sent += prime(target)
    log(f"{target.label}: warm-up {target.warmup_s:g} s")
    warm = wrk(target.url, script, connections=16, seconds=target.warmup_s)
    sent += warm["requests"]
    if warm["requests"] == 0 or warm["non_2xx"] == warm["requests"]:
        raise RuntimeError(f"{target.label}: every warm-up request failed: {warm}")

    log(f"{target.label}: 1 connection, {DURATION:g} s")
    res["c1"] = wrk(target.url, script, connections=1, seconds=DURATION)
    sent += res["c1"]["requests"]

    if target.full:
        log(f"{target.label}: fixed rate {RATE:g} req/s, {DURATION:g} s")
        res["rate"] = client("rate", target.url, target.key, "--rate", f"{RATE:g}")
        sent += res["rate"]["sent"] + 8  # + the pooled connections' warm-up requests
        log(f"{target.label}: streams ({CHUNKS} chunks, {SPACING_MS:g} ms apart), {DURATION:g} s")
        res["stream"] = client("stream", target.url, target.key)
        sent += res["stream"]["streams"] + 3 + res["stream"]["errors"]

    log(f"{target.label}: 16 connections, {DURATION:g} s (sampling CPU)")
    watched = {"upstream": [upstream_pid]}
    if target.master_pid:
        watched["server"] = worker_pids(target.master_pid)
    watched["redis"] = pids_named("redis-server")
    watched["postgres"] = pids_named("postgres")
    cpu0, busy0 = cpu_snapshot(watched), machine_busy_seconds()
    t0 = time.monotonic()
    res["c16"] = wrk(target.url, script, connections=16, seconds=DURATION)
    wall = time.monotonic() - t0
    cpu1, busy1 = cpu_snapshot(watched), machine_busy_seconds()
    used = {
        group: sum(cpu1[group][pid] - cpu0[group][pid] for pid in cpu1[group] if pid in cpu0[group])
        for group in watched
    }
    used["wrk"] = res["c16"]["wrk_cpu_s"]
    used["other"] = max(0.0, (busy1 - busy0) - sum(used.values()))
    res["cpu_c16_pct"] = {group: round(100 * seconds / wall) for group, seconds in used.items()}
    serving = used.get("server", used["upstream"])
    res["cpu_ms_per_request"] = 1000 * serving / max(1, res["c16"]["requests"])
    sent += res["c16"]["requests"]

    if target.full:
        log(f"{target.label}: 64 connections, {DURATION:g} s")
        res["c64"] = wrk(target.url, script, connections=64, seconds=DURATION)
        sent += res["c64"]["requests"]
    load_end = time.monotonic()

    res["requests_completed"] = sent
    calls = redis_script_calls() - scripts_before
    res["redis_script_calls_per_request"] = round(calls / max(1, sent), 2)
    if target.audited:
        res["audit"] = audit_backlog(audit_before, sent, load_end)
    elif target.gateway:
        time.sleep(1.0)  # past a flush interval: rows that were going to land have landed
        res["audit_rows_while_off"] = (
            sql_scalar("SELECT count(*) FROM audit_auditevent") - audit_before
        )
    if target.master_pid:
        res["rss"] = {
            str(pid): {
                "peak_mb": round((proc_status_kb(pid, "VmHWM") or 0) / 1024, 1),
                "now_mb": round((proc_status_kb(pid, "VmRSS") or 0) / 1024, 1),
            }
            for pid in worker_pids(target.master_pid)
        }
    if PROFILE and target.name == "full":
        res["profile"] = profile(target, script, workdir)
    return res


def prime(target: Target, rounds: int = 3, timeout: float = 60) -> int:
    """First requests, a few at a time on new connections so that every worker gets some: a
    cold worker builds its snapshot and opens its connections on its first request (about a
    second), which would otherwise land in the first measurement. Returns requests sent."""
    from concurrent.futures import ThreadPoolExecutor

    body = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {target.key}"}

    def one(_: int) -> int:
        request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    sent = 0
    with ThreadPoolExecutor(4 * WORKERS) as pool:
        for _ in range(rounds):
            statuses = list(pool.map(one, range(4 * WORKERS)))
            sent += len(statuses)
            if not any(status == 200 for status in statuses):
                raise RuntimeError(f"{target.label}: priming requests failed: {statuses}")
    return sent


def audit_backlog(before: int, sent: int, load_end: float) -> dict:
    """How long after the load stopped until every completed request had its row."""
    rows = sql_scalar("SELECT count(*) FROM audit_auditevent") - before
    at_end = rows
    drained = None
    deadline = load_end + 120
    while time.monotonic() < deadline:
        if rows >= sent:
            drained = time.monotonic() - load_end
            break
        time.sleep(0.05)
        rows = sql_scalar("SELECT count(*) FROM audit_auditevent") - before
    time.sleep(0.5)  # rows of requests wrk cut off at its deadline land after the others
    outcomes = dict(
        sql_rows(
            "SELECT outcome, count(*) FROM (SELECT outcome FROM audit_auditevent "
            f"ORDER BY id DESC LIMIT {max(1, rows + 1000)}) t GROUP BY outcome"
        )
    )
    return {
        "expected_at_least": sent,
        "rows_when_load_ended": at_end,
        "rows": sql_scalar("SELECT count(*) FROM audit_auditevent") - before,
        "drained_after_s": None if drained is None else round(drained, 2),
        "outcomes_of_latest_rows": outcomes,
    }


def profile(target: Target, script: Path, workdir: Path) -> dict:
    """An extra 16-connection run (not measured) with py-spy sampling one worker."""
    pyspy = os.environ.get("BENCH_PYSPY") or shutil.which("py-spy")
    if not pyspy or not target.master_pid:
        return {"skipped": "py-spy not found (pip install py-spy, or set BENCH_PYSPY)"}
    out = workdir / "profile.folded"
    log(f"{target.label}: profiling the workers with py-spy for {DURATION:g} s (not measured)")
    spy = subprocess.Popen(
        [
            pyspy,
            "record",
            "-p",
            str(target.master_pid),
            "--subprocesses",
            "--gil",  # only samples holding the GIL: where the CPU goes, not the waits
            "-d",
            f"{DURATION:g}",
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    wrk(target.url, script, connections=16, seconds=DURATION)
    _, err = spy.communicate(timeout=60)
    if not out.exists():
        return {"skipped": f"py-spy failed: {err[-500:]}"}
    summary = summarize_profile(out)
    (BENCH / "profile.txt").write_text(summary)
    shutil.copy(out, BENCH / "profile.folded")
    return {"written": "bench/profile.txt, bench/profile.folded"}


def summarize_profile(folded: Path, top: int = 35) -> str:
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")] or frames
        if frames:
            own[_short(frames[-1])] += n
        for name in {_short(f) for f in frames}:
            inclusive[name] += n
    lines = [
        f"py-spy --gil, every worker, {total} samples, 16 connections",
        "",
        "own time (leaf frame):",
    ]
    lines += [f"{100 * n / total:6.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive (on the stack):"]
    lines += [f"{100 * n / total:6.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file-relative path)"
    frame = re.sub(r":\d+\)$", ")", frame)
    return frame.replace(str(ROOT) + "/", "").replace(".venv/lib/python3.11/site-packages/", "")


# --- the gateway and LiteLLM -------------------------------------------------------------------
CONFIGS = [
    # name, label, governance, audit, full suite
    ("full", "gateway", True, True, True),
    ("no_governance", "gateway, governance off", False, True, False),
    ("no_audit", "gateway, audit off", True, False, False),
    ("bare", "gateway, governance + audit off", False, False, True),
]


def start_gateway(
    procs: Processes,
    workdir: Path,
    name: str,
    governance: bool,
    audit: bool,
    workers: int = WORKERS,
):
    port = free_port()
    env = django_env(workdir)
    env.update(
        GATEWAY_GOVERNANCE_ENABLED="1" if governance else "0",
        AUDIT_ENABLED="1" if audit else "0",
        GATEWAY_METRICS_ENABLED="1" if METRICS else "0",
    )
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        env.pop(name, None)
    redis_client().flushdb()
    proc = procs.start(
        f"gateway-{name}",
        [
            PY,
            "-m",
            "uvicorn",
            "gateway_project.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--lifespan",
            "on",
            "--timeout-graceful-shutdown",
            "10",
        ],
        env,
    )
    wait_http(f"http://127.0.0.1:{port}/ready", proc, 60, f"gateway-{name}", procs)
    # /ready answered by one worker; give the others a moment to finish importing.
    deadline = time.monotonic() + 20
    while len(worker_pids(proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    return proc, port


def scrape_metrics(port: int) -> dict:
    """One scrape of /metrics after the load (from 127.0.0.1, which may): how long it took,
    its size, and the requests it counted (every worker's, whichever answered)."""
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    took_ms = (time.perf_counter() - started) * 1000
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_requests_total{")
    )
    log(f"/metrics: {took_ms:.1f} ms, {len(text):,} bytes, {counted:,.0f} requests counted")
    return {"ms": round(took_ms, 1), "bytes": len(text), "requests_counted": int(counted)}


def hold_streams(procs: Processes, workdir: Path, key: str) -> dict:
    """HOLD_STREAMS streams open at once against ONE worker (governance and audit on), each
    20 chunks 250 ms apart (5 s): all must complete, with their chunks on time."""
    proc, port = start_gateway(procs, workdir, "hold", True, True, workers=1)
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        prime(Target("hold", "hold", f"http://127.0.0.1:{port}/v1", key), rounds=1)
        log(f"one worker: {HOLD_STREAMS:,} streams open at once (20 chunks, 250 ms apart)")
        out = client(
            "hold",
            url,
            key,
            "--streams",
            str(HOLD_STREAMS),
            "--chunks",
            "20",
            "--spacing-ms",
            "250",
        )
        out["rss_peak_mb"] = max(
            round((proc_status_kb(pid, "VmHWM") or 0) / 1024, 1) for pid in worker_pids(proc.pid)
        )
        return out
    finally:
        procs.stop(proc)


def seed_scale(workdir: Path) -> list[str]:
    """SCALE_TENANTS tenants with SCALE_KEYS keys in all; returns 1,000 usable keys."""
    out = workdir / "scale-keys.txt"
    log(f"seeding {SCALE_TENANTS:,} tenants and {SCALE_KEYS:,} keys")
    seeded = django_script(
        [
            str(BENCH / "scale_seed.py"),
            "--tenants",
            str(SCALE_TENANTS),
            "--keys",
            str(SCALE_KEYS),
            "--sample",
            str(min(1000, SCALE_TENANTS)),
            "--out",
            str(out),
        ],
        workdir,
        timeout=900,
    )
    log(seeded.strip())
    return out.read_text().split()


def timed_request(url: str, key: str) -> float:
    """Milliseconds for one non-streamed request (the first one builds the snapshot)."""
    body = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def litellm_command() -> list[str] | None:
    explicit = os.environ.get("BENCH_LITELLM")
    if explicit:
        return [explicit]
    if importlib.util.find_spec("litellm") is not None:
        found = shutil.which("litellm", path=str(Path(PY).parent)) or shutil.which("litellm")
        return [found] if found else [PY, "-m", "litellm"]
    return None


def start_litellm(procs: Processes, workdir: Path, upstream_port: int, cmd: list[str]):
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            model_list:
              - model_name: bench
                litellm_params:
                  model: openai/bench-model
                  api_base: http://127.0.0.1:{upstream_port}/v1
                  api_key: sk-bench-upstream
            litellm_settings:
              telemetry: false
            general_settings:
              master_key: {LITELLM_KEY}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(LITELLM_LOG="ERROR", PYTHONUNBUFFERED="1", LITELLM_TELEMETRY="False")
    proc = procs.start(
        "litellm",
        [
            *cmd,
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(WORKERS),
        ],
        env,
    )
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, 120, "litellm", procs)
    # LiteLLM 1.108 spawns its workers with multiprocessing, one after the other: the first
    # answers health checks while the next is still importing (tens of MB, not a worker
    # yet). Wait until WORKERS children have finished importing (LiteLLM's workers hold
    # over 300 MB), or the measurement would miss a worker's CPU and memory.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        loaded = [p for p in worker_pids(proc.pid) if (proc_status_kb(p, "VmRSS") or 0) > 150_000]
        if len(loaded) >= WORKERS:
            break
        time.sleep(0.5)
    else:
        log(f"LiteLLM: fewer than {WORKERS} workers finished starting; measuring anyway")
    time.sleep(2.0)
    return proc, port


# --- the table ---------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def added(value: float | None, base: float | None) -> str:
    if value is None:
        return "—"
    if base is None:
        return fmt(value)
    delta = value - base
    return f"{fmt(value)} ({'+' if delta >= 0 else '-'}{fmt(abs(delta))})"


def ratio(value: float | None, base: float | None) -> str:
    if value is None:
        return "—"
    if not base:
        return fmt(value)
    return f"{fmt(value)} ({value / base:.3f}x)"


def get(results: dict, *path: str) -> float | None:
    node = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def coalesced_pct(stream: dict | None) -> float | None:
    if not stream or not stream.get("gaps_ms"):
        return None
    gaps = stream["gaps_ms"]
    return 100 * sum(1 for g in gaps if g < SPACING_MS / 2) / len(gaps)


def timing_preserved(stream: dict | None, direct: dict | None) -> str:
    if not stream or not direct:
        return "—"
    expected = {str(CHUNKS)}
    if set(stream["content_chunks_per_stream"]) != expected or stream["errors"]:
        return f"no: chunk counts {stream['content_chunks_per_stream']}, errors {stream['errors']}"
    shift = abs((stream["gap_p50_ms"] or 0) - (direct["gap_p50_ms"] or 0))
    extra = (coalesced_pct(stream) or 0) - (coalesced_pct(direct) or 0)
    if shift > 1.0:
        return f"no: median gap moved {shift:.2f} ms"
    if extra > 1.0:
        return f"no: {extra:.1f} points more gaps under {SPACING_MS / 2:g} ms"
    return f"yes ({CHUNKS}/{CHUNKS} chunks, median gap ±{shift:.2f} ms)"


def table(results: dict, info: dict, order: list[tuple[str, str]]) -> str:
    direct = results.get("direct", {})
    cols = [(name, label) for name, label in order if name in results]
    header = "| metric | " + " | ".join(label for _, label in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    rows: list[str] = [header, sep]

    def row(title: str, cell) -> None:
        rows.append(
            f"| {title} | " + " | ".join(cell(name, results[name]) for name, _ in cols) + " |"
        )

    def throughput(key: str):
        return lambda name, r: (
            fmt(get(r, key, "rps"))
            if name == "direct"
            else ratio(get(r, key, "rps"), get(direct, key, "rps"))
        )

    def latency(*path: str):
        return lambda name, r: (
            fmt(get(r, *path)) if name == "direct" else added(get(r, *path), get(direct, *path))
        )

    row("throughput, 16 connections (req/s; x direct)", throughput("c16"))
    row("throughput, 64 connections (req/s; x direct)", throughput("c64"))
    row("latency, 1 connection, p50 (ms; + added)", latency("c1", "p50_ms"))
    row("latency, 1 connection, p99 (ms; + added)", latency("c1", "p99_ms"))
    row(
        f"fixed rate {RATE:g} req/s: achieved (req/s)",
        lambda n, r: (
            "—"
            if get(r, "rate", "achieved_rps") is None
            else fmt(get(r, "rate", "achieved_rps"), 0)
            + (" (overloaded: queued)" if get(r, "rate", "achieved_rps") < 0.95 * RATE else "")
        ),
    )
    row(f"latency at {RATE:g} req/s, p50 (ms; + added)", latency("rate", "p50_ms"))
    row(f"latency at {RATE:g} req/s, p99 (ms; + added)", latency("rate", "p99_ms"))
    row("streaming time to first token, p50 (ms; + added)", latency("stream", "ttft_p50_ms"))
    row("streaming time to first token, p99 (ms; + added)", latency("stream", "ttft_p99_ms"))
    row(
        f"gap between 1st and 2nd token, p50 (ms; upstream sends {SPACING_MS:g})",
        lambda n, r: fmt(get(r, "stream", "first_gap_p50_ms")),
    )
    row(
        f"gap between later chunks, p50 / p99 (ms; upstream sends {SPACING_MS:g})",
        lambda n, r: (
            f"{fmt(get(r, 'stream', 'gap_p50_ms'))} / {fmt(get(r, 'stream', 'gap_p99_ms'))}"
            if get(r, "stream", "gap_p50_ms") is not None
            else "—"
        ),
    )
    row(
        f"later gaps under {SPACING_MS / 2:g} ms (chunks bunched, %)",
        lambda n, r: fmt(coalesced_pct(r.get("stream")), 1),
    )
    row(
        "chunk timing preserved",
        lambda n, r: (
            "(reference)"
            if n == "direct"
            else timing_preserved(r.get("stream"), direct.get("stream"))
        ),
    )
    row(
        "peak RSS per worker (MB, VmHWM)",
        lambda n, r: (
            " / ".join(fmt(w["peak_mb"], 0) for w in r["rss"].values()) if r.get("rss") else "—"
        ),
    )
    row(
        "audit rows: written / requests; backlog drained after load (s)",
        lambda n, r: (
            f"{r['audit']['rows']:,} / {r['audit']['expected_at_least']:,}; "
            f"{fmt(r['audit']['drained_after_s'])}"
            if r.get("audit")
            else "—"
        ),
    )
    row(
        "Redis script calls per request (governance work; server-wide count)",
        lambda n, r: fmt(r.get("redis_script_calls_per_request")),
    )
    row(
        "errors (non-2xx or socket), all runs",
        lambda n, r: str(
            sum(int(get(r, k, "errors") or 0) for k in ("c1", "c16", "c64", "rate", "stream"))
        ),
    )
    row(
        "CPU per request at 16 connections (ms; server, or upstream for direct)",
        lambda n, r: fmt(r.get("cpu_ms_per_request")),
    )
    row(
        "CPU at 16 connections (% of one core): server / upstream / wrk / redis / postgres / "
        "everything else on the machine",
        lambda n, r: " / ".join(
            str(r.get("cpu_c16_pct", {}).get(k, "—"))
            for k in ("server", "upstream", "wrk", "redis", "postgres", "other")
        ),
    )

    v = info["versions"]
    m = info["machine"]
    head = [
        "## Performance (`make bench`)",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; before the run: load average {' '.join(m['loadavg_start'])}, "
        f"{m['busy_before_pct']}% CPU busy with other work.",
        f"Gateway: uvicorn {v.get('uvicorn', '?')}, {WORKERS} workers, uvloop, httptools, Django "
        f"{v.get('django', '?')}, Postgres, Redis; governance = one tenant rate limit (RPM+TPM) "
        "and a hard monthly budget checked and settled on every request; audit = one row per "
        "request. Load: "
        f"{v.get('wrk', 'wrk')} (2 threads), bench/client.py (fixed rate, streams); "
        f"{DURATION:g} s per measurement; streams of {CHUNKS} chunks {SPACING_MS:g} ms apart. "
        f"Run {info['started']}, {info['elapsed_s']:.0f} s. Everything on the same machine.",
        "",
    ]
    notes = [""]
    if info.get("notes"):
        notes += [f"- {note}" for note in info["notes"]]
    return "\n".join(head + rows + notes) + "\n"


def targets_check(results: dict) -> list[str]:
    full, direct = results.get("full"), results.get("direct")
    if not full or not direct:
        return []
    out = []
    c16 = get(full, "c16", "rps")
    out.append(f"target ~1,000 req/s at 16 connections: {fmt(c16)} req/s")
    for pct, limit in (("p50_ms", 1.0), ("p99_ms", 5.0)):
        a, b = get(full, "c1", pct), get(direct, "c1", pct)
        if a is not None and b is not None:
            out.append(
                f"target added {pct[:3]} at 1 connection ≤ {limit:g} ms: {a - b:.2f} ms "
                f"({'met' if a - b <= limit else 'not met'})"
            )
    a, b = get(full, "stream", "ttft_p50_ms"), get(direct, "stream", "ttft_p50_ms")
    if a is not None and b is not None:
        out.append(
            f"target added TTFT p50 ≤ 1 ms: {a - b:.2f} ms ({'met' if a - b <= 1 else 'not met'})"
        )
    if full.get("rss"):
        peak = max(w["peak_mb"] for w in full["rss"].values())
        out.append(
            f"target ≤ 150 MB per worker: {peak:.0f} MB ({'met' if peak <= 150 else 'not met'})"
        )
    scale = results.get("scale")
    if scale and get(scale, "c16", "rps") and c16:
        out.append(
            f"per-request cost with {SCALE_TENANTS:,} tenants / {SCALE_KEYS:,} keys (wrk rotating "
            f"over {scale.get('keys_rotated', 0):,} keys of as many tenants): "
            f"{fmt(get(scale, 'c16', 'rps'))} req/s and {fmt(scale.get('cpu_ms_per_request'))} ms "
            f"CPU per request, against {fmt(c16)} req/s and "
            f"{fmt(full.get('cpu_ms_per_request'))} ms with one tenant and one key; first "
            "requests after start (each worker builds its snapshot): "
            + ", ".join(f"{ms:,.0f}" for ms in scale.get("cold_first_requests_ms", []))
            + " ms"
        )
    return out


def hold_note(hold: dict | None) -> list[str]:
    if not hold:
        return []
    failures = ", ".join(f"{k}: {v}" for k, v in hold.get("failures", {}).items()) or "none"
    return [
        f"{hold['streams']:,} streams open at once in ONE worker (governance + audit on, "
        f"{hold['chunks']} chunks {hold['spacing_ms']:g} ms apart): {hold['complete']:,} "
        f"complete with every chunk, failures: {failures}; TTFT p50 / p99 "
        f"{fmt(hold.get('ttft_p50_ms'))} / {fmt(hold.get('ttft_p99_ms'))} ms; later chunk gaps "
        f"p50 / p99 / max {fmt(hold.get('gap_p50_ms'))} / {fmt(hold.get('gap_p99_ms'))} / "
        f"{fmt(hold.get('gap_max_ms'))} ms; worker peak RSS {fmt(hold.get('rss_peak_mb'), 0)} MB"
    ]


# --- main --------------------------------------------------------------------------------------
def main() -> int:
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: `apt-get install -y wrk` (Debian) and run again.",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    info: dict = {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "settings": {
            "duration_s": DURATION,
            "warmup_s": WARMUP,
            "rate": RATE,
            "chunks": CHUNKS,
            "spacing_ms": SPACING_MS,
            "workers": WORKERS,
            "metrics": METRICS,
        },
        "notes": [],
    }
    results: dict[str, dict] = {}
    order: list[tuple[str, str]] = [("direct", "upstream direct")]
    workdir = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    (workdir / "state").mkdir()
    procs = Processes(workdir)
    ok = False
    try:
        upstream_port = free_port()
        upstream = procs.start(
            "upstream",
            [
                PY,
                str(BENCH / "upstream.py"),
                "--port",
                str(upstream_port),
                "--chunks",
                str(CHUNKS),
                "--spacing-ms",
                f"{SPACING_MS:g}",
            ],
            dict(os.environ),
        )
        wait_http(f"http://127.0.0.1:{upstream_port}/health", upstream, 15, "upstream", procs)

        log(f"database {DATABASE_URL}: drop, create, migrate; redis {REDIS_URL}: flush")
        reset_database(DATABASE_URL)
        redis_client().flushdb()
        manage(["migrate", "--noinput"], workdir)
        key = seed(workdir, upstream_port)

        direct = Target("direct", "upstream direct", f"http://127.0.0.1:{upstream_port}/v1", key)
        results["direct"] = measure(direct, workdir, upstream.pid, procs)

        for name, label, governance, audit, full in CONFIGS:
            if not full and not LAYERS:
                continue
            proc, port = start_gateway(procs, workdir, name, governance, audit)
            try:
                target = Target(
                    name,
                    label,
                    f"http://127.0.0.1:{port}/v1",
                    key,
                    master_pid=proc.pid,
                    gateway=True,
                    audited=audit,
                    full=full,
                )
                results[name] = measure(target, workdir, upstream.pid, procs)
                if METRICS:
                    results[name]["metrics_scrape"] = scrape_metrics(port)
                order.append((name, label))
            finally:
                procs.stop(proc)
            stray = results[name].get("audit_rows_while_off")
            if stray:
                info["notes"].append(
                    f"{label}: AUDIT_ENABLED=0 did not stop the audit ({stray:,} rows written), "
                    "so that column measures the audit too."
                )

        cmd = litellm_command()
        if cmd is None:
            info["notes"].append("LiteLLM not installed: skipped.")
            log("LiteLLM not installed: skipped")
        else:
            proc, port = start_litellm(procs, workdir, upstream_port, cmd)
            try:
                target = Target(
                    "litellm",
                    "LiteLLM proxy (no DB)",
                    f"http://127.0.0.1:{port}/v1",
                    LITELLM_KEY,
                    master_pid=proc.pid,
                )
                results["litellm"] = measure(target, workdir, upstream.pid, procs)
                order.append(("litellm", "LiteLLM proxy (no DB)"))
            finally:
                procs.stop(proc)

        if HOLD_STREAMS:
            info["hold"] = hold_streams(procs, workdir, key)

        if SCALE_TENANTS:
            # Last: it adds its tenants to the database the other columns used.
            keys = seed_scale(workdir)
            label = f"gateway, {SCALE_TENANTS:,} tenants / {SCALE_KEYS:,} keys"
            proc, port = start_gateway(procs, workdir, "scale", True, True)
            try:
                target = Target(
                    "scale",
                    label,
                    f"http://127.0.0.1:{port}/v1",
                    keys[0],
                    master_pid=proc.pid,
                    gateway=True,
                    audited=True,
                    full=False,
                    keys=keys,
                    # Every worker reads each key once and each tenant's budget counter
                    # is rebuilt once: the first requests (timed apart, below) are not
                    # the steady state this column compares.
                    warmup_s=max(WARMUP, 15),
                )
                cold = [timed_request(target.url, k) for k in keys[: 2 * WORKERS]]
                results["scale"] = measure(target, workdir, upstream.pid, procs)
                results["scale"]["cold_first_requests_ms"] = [round(ms, 1) for ms in cold]
                results["scale"]["keys_rotated"] = len(keys)
                order.append(("scale", label))
            finally:
                procs.stop(proc)
        ok = True
    finally:
        procs.stop_all()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"bench failed; logs kept in {workdir}", file=sys.stderr)

    info["elapsed_s"] = time.monotonic() - started
    info["notes"] = targets_check(results) + hold_note(info.get("hold")) + info["notes"]
    md = table(results, info, order)
    print(md)
    RESULTS_MD.write_text(md)
    for r in results.values():
        if r.get("stream"):
            r["stream"].pop("gaps_ms", None)
    RESULTS_JSON.write_text(json.dumps({"info": info, "results": results}, indent=2, default=str))
    print(f"(written to {RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
