"""Session-wide fake upstreams. Load with `pytest_plugins = ["tests.fakes.fixtures"]`.

The servers are process-wide singletons: if the fixtures get registered twice (a plugin
and a module import), both registrations still share one server of each kind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import FakeServer

_running: dict[type[FakeServer], FakeServer] = {}


def _shared(cls: type[FakeServer]) -> Iterator[FakeServer]:
    server = _running.get(cls)
    if server is None:
        server = _running[cls] = cls().start()
    yield server
    if _running.pop(cls, None) is not None:
        server.stop()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    yield from _shared(FakeOpenAI)


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    yield from _shared(FakeAnthropic)
