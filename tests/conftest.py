"""Shared fixtures. Persona tenants: `acme` owns things, `globex` must never see them.

`acme` and `globex` are the tenants alone (admin, services, the REST API); `personas` is
both of them ready to call the proxy: a key each, a private route each, and the global
route `echo` on the stub upstream (see tests/personas.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
from django.db.backends import utils as db_utils

from audit.writer import audit_writer
from providers.tokens import prompt_calibration
from routing.models import Route
from routing.proxy.strategies import latency_tracker, reset_round_robin
from routing.snapshot import snapshots
from tests import factories
from tests.live import GatewayProcess
from tests.personas import Personas, make_fake_openai_route, make_personas

pytest_plugins = ["tests.fakes.fixtures"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest) -> Iterator[None]:
    """Users made in a test get a cheap hash: PBKDF2's deliberate slowness, paid by every
    admin_client, is most of the admin tests' time. Not in live tests: a server process
    they start must be able to check the passwords they set. (Not through the `settings`
    fixture: set up this early, it would restore a test's settings after the other
    fixtures' teardown, which may need them restored.)"""
    if request.node.get_closest_marker("live") is not None:
        yield
        return
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


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


async def delete_redis_keys(match: str, *, keep: str = "") -> None:
    """Delete the keys matching `match` (but not those starting with `keep`) from the
    gateway's Redis: REDIS_URL's, or the process's shared fakeredis."""
    from gateway_project.lib import redis_client

    client = redis_client.new_client()
    try:
        keys = [key async for key in client.scan_iter(match=match)]
        keys = [key for key in keys if not (keep and key.startswith(keep.encode()))]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def forget_governance_counters() -> None:
    """What a Redis restart does to governance: the rate windows, budget counters and
    reservations are gone (budgets are rebuilt from the ledger when next used); the config
    generation (`gw:config*`) is left alone."""
    await delete_redis_keys("gw:*", keep="gw:config")


@pytest.fixture
def fresh_circuits() -> Iterator[None]:
    """No circuit state before or after the test: Redis keys and this process's copy."""
    from asgiref.sync import async_to_sync

    from providers.circuit import KEY_PREFIX, breaker

    async_to_sync(delete_redis_keys)(f"{KEY_PREFIX}*")
    breaker.forget()
    yield
    async_to_sync(delete_redis_keys)(f"{KEY_PREFIX}*")
    breaker.forget()


@pytest.fixture
def acme(db):
    """The tenant alone, no key nor route (`personas` makes its own acme: not both)."""
    return factories.make_tenant("acme")


@pytest.fixture
def globex(db):
    """The tenant alone, no key nor route (`personas` makes its own globex: not both)."""
    return factories.make_tenant("globex")


@pytest.fixture
def personas(transactional_db) -> Personas:
    """acme and globex with a key and a private route each, and the global route `echo`.
    Committed, not in a test transaction: the proxy runs its ORM calls on another thread
    (or in a server process), which sees committed rows only."""
    return make_personas()


@pytest.fixture
def gpt(personas: Personas, fake_openai) -> Route:
    """acme's route `gpt`, to the fake OpenAI server (real HTTP, served in a thread)."""
    return make_fake_openai_route(personas.acme, fake_openai.openai_base_url)


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

    def execute(self, sql, params=None):
        counter.add(sql)
        return original_execute(self, sql, params)

    def executemany(self, sql, param_list):
        counter.add(sql)
        return original_executemany(self, sql, param_list)

    db_utils.CursorWrapper.execute = execute
    db_utils.CursorWrapper.executemany = executemany
    try:
        yield counter
    finally:
        db_utils.CursorWrapper.execute = original_execute
        db_utils.CursorWrapper.executemany = original_executemany


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
    """A test that starts real processes (a gateway, redis-server, a TCP proxy, `make`) is
    `live`, so that `-m "not live"` is the fast inner loop: every test in a `*_live.py`
    module, and any test using the `gateway` fixture wherever it is. A test elsewhere that
    starts one itself says so with `@pytest.mark.live`."""
    for item in items:
        if item.path.name.endswith("_live.py") or "gateway" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.live)


def pytest_terminal_summary(terminalreporter) -> None:
    """Where the browser walks saved their screenshots, one line per test (each test says
    so through its `user_properties`, which reach the summary however the run is split)."""
    for reports in terminalreporter.stats.values():
        for report in reports:
            properties = dict(getattr(report, "user_properties", ()) or ())
            if getattr(report, "when", "") == "call" and "screenshots" in properties:
                extra = "".join(
                    f", {name} {value}"
                    for name, value in properties.items()
                    if name != "screenshots"
                )
                terminalreporter.write_line(
                    f"screenshots of {report.nodeid}: {properties['screenshots']}{extra}"
                )
