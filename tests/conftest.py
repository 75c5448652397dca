"""Shared fixtures. Persona tenants: `acme` owns things, `globex` must never see them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
from django.db.backends import utils as db_utils

from audit.writer import audit_writer
from providers.tokens import prompt_calibration
from routing.snapshot import snapshots
from routing.strategies import latency_tracker, reset_round_robin
from tests import factories
from tests.live import GatewayProcess

pytest_plugins = ["tests.fakes.fixtures"]


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts with a cold snapshot and an empty audit queue (data differs per test)."""
    snapshots.invalidate()
    audit_writer.discard()
    reset_round_robin()
    latency_tracker.clear()
    prompt_calibration.clear()
    yield
    snapshots.invalidate()
    audit_writer.discard()


@pytest.fixture
def saved() -> Iterator[list[str]]:
    """The models saved during the test (post_save is what invalidates the proxy's snapshot,
    so a write path that skips it would leave every process serving stale config)."""
    from django.db.models.signals import post_save

    seen: list[str] = []

    def record(sender: type, **kwargs: object) -> None:
        seen.append(sender.__name__)

    post_save.connect(record, weak=False, dispatch_uid="tests-saved")
    yield seen
    post_save.disconnect(dispatch_uid="tests-saved")


@pytest.fixture
def fresh_circuits() -> Iterator[None]:
    """No circuit state before or after the test: Redis keys and this process's copy."""
    from asgiref.sync import async_to_sync

    from gateway_project.lib import redis_client
    from providers.circuit import KEY_PREFIX, breaker

    async def delete_circuit_keys() -> None:
        client = redis_client.new_client()
        try:
            keys = [key async for key in client.scan_iter(match=f"{KEY_PREFIX}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    async_to_sync(delete_circuit_keys)()
    breaker.forget()
    yield
    async_to_sync(delete_circuit_keys)()
    breaker.forget()


@pytest.fixture
def acme(db):
    return factories.make_tenant("acme")


@pytest.fixture
def globex(db):
    return factories.make_tenant("globex")


@pytest.fixture
def flush_audit():
    """Write queued audit rows now (in-process tests run without the background thread)."""
    return audit_writer.flush


class QueryCounter:
    def __init__(self) -> None:
        self.queries: list[str] = []
        self._lock = threading.Lock()

    def add(self, sql: str) -> None:
        with self._lock:
            self.queries.append(sql)


@contextmanager
def count_queries_everywhere() -> Iterator[QueryCounter]:
    """Count SQL from every thread and connection (async views run ORM calls in a worker
    thread, which `django_assert_num_queries` on the test's own connection would miss)."""
    counter = QueryCounter()
    original_execute = db_utils.CursorWrapper.execute
    original_executemany = db_utils.CursorWrapper.executemany

    def execute(self, sql, params=None):  # type: ignore[no-untyped-def]
        counter.add(sql)
        return original_execute(self, sql, params)

    def executemany(self, sql, param_list):  # type: ignore[no-untyped-def]
        counter.add(sql)
        return original_executemany(self, sql, param_list)

    db_utils.CursorWrapper.execute = execute  # type: ignore[method-assign]
    db_utils.CursorWrapper.executemany = executemany  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        db_utils.CursorWrapper.execute = original_execute  # type: ignore[method-assign]
        db_utils.CursorWrapper.executemany = original_executemany  # type: ignore[method-assign]


@pytest.fixture(scope="session", autouse=True)
def _remove_state_dir():
    """The run's own state directory (SQLite file, logs) goes when the process exits:
    after pytest-django has dropped the test database in it, not before."""
    import atexit
    import shutil

    from django.conf import settings

    if settings.STATE_DIR.name.startswith("test-"):
        atexit.register(shutil.rmtree, settings.STATE_DIR, ignore_errors=True)
    yield


@pytest.fixture(scope="session", autouse=True)
def _fresh_redis():
    """Governance counters are keyed by budget and limit ids, which a new test database
    hands out again: start every run from empty counters."""
    from django.conf import settings

    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(match="gw:*"):
            client.delete(key)
    yield


@pytest.fixture(scope="session", autouse=True)
def _close_worker_thread_connections(django_db_setup):
    """Async tests run ORM calls on asgiref's shared worker thread; close its connection
    at the end so the test database can be dropped."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    executor = SyncToAsync.single_thread_executor
    executor.submit(connections.close_all).result()


@pytest.fixture(scope="session")
def gateway(django_db_setup, django_db_blocker) -> Iterator[GatewayProcess]:
    """A real gateway server process (uvicorn) on the test database."""
    process = GatewayProcess().start()
    yield process
    process.stop()


def assert_envelope(response, status: int, type_: str, code: str | None = None) -> dict:
    """A proxy error answer: the status, the OpenAI error envelope, and our request id."""
    assert response.status_code == status, response.content
    error = orjson.loads(response.content)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    if code is not None:
        assert error["code"] == code
    assert response["x-request-id"].startswith("req_")
    return error


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in a `*_live.py` module starts real processes: `-m "not live"` skips them."""
    for item in items:
        if item.path.name.endswith("_live.py"):
            item.add_marker(pytest.mark.live)
