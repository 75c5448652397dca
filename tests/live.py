"""A real gateway process for end-to-end tests: uvicorn serving the ASGI app, sharing the
test database (and Redis, when REDIS_URL is set) with the test process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
# What the test servers accept for /ready's details (the audit backlog that drain() reads).
METRICS_TOKEN = "test-metrics-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database pytest-django created, for the server process."""
    db = settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


class GatewayProcess:
    def __init__(
        self,
        *,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.extra_env = extra_env or {}
        self.args = args  # more uvicorn options
        self.process: subprocess.Popen | None = None
        self.log_path = Path(settings.STATE_DIR) / f"gateway-{self.port}.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
        env.update(
            DATABASE_URL=test_database_url(),
            GATEWAY_STATE_DIR=str(settings.STATE_DIR),
            SECRET_KEY="test-only-secret",
            DEBUG="0",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            GATEWAY_SNAPSHOT_CHECK_SECONDS="0",
            GATEWAY_METRICS_TOKEN=METRICS_TOKEN,
            AUDIT_FLUSH_INTERVAL_SECONDS="0.05",
            PYTHONUNBUFFERED="1",
        )
        if settings.REDIS_URL:
            env["REDIS_URL"] = settings.REDIS_URL
        env.update(self.extra_env)
        return env

    def start(self) -> GatewayProcess:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "gateway_project.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--lifespan",
                "on",
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "10",
                *self.args,
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            try:
                httpx.get(f"{self.base_url}/health", timeout=0.5)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not start:\n{self.log()}")

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until the server has written every audit row it queued (its /ready says how
        many are pending), so they land in this test, not in the next one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pending = httpx.get(
                    f"{self.base_url}/ready",
                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                    timeout=2,
                ).json()["audit_pending"]
            except (httpx.HTTPError, KeyError, ValueError):
                return
            if pending == 0:
                time.sleep(0.1)  # a batch taken off the queue may still be in its INSERT
                return
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RedisServer:
    """A throwaway redis-server on its own port, so the test may kill it.

    With a `directory`, what it saves there (SAVE) comes back when it is started again on
    the same port: a restart that restores old data, not an empty one."""

    def __init__(self, *, password: str = "", directory: Path | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.directory = directory
        credentials = f":{password}@" if password else ""
        self.url = f"redis://{credentials}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *(["--dir", str(self.directory)] if self.directory else []),
                "--save",
                "",
                "--appendonly",
                "no",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped (SIGSTOP) one cannot die yet
            self.process.kill()
            self.process.wait()


def stop_quietly(*processes: GatewayProcess, django_db_blocker) -> None:
    """Stop gateway processes, then drop the audit rows their shutdown flush wrote late, so
    they do not appear in the next test module's database."""
    for process in processes:
        process.stop()
    from audit.models import AuditEvent

    with django_db_blocker.unblock():
        AuditEvent.objects.all().delete()
