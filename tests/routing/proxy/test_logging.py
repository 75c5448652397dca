"""Log lines of proxy requests (gateway_project/lib/logs.py): every logger at DEBUG, a
distinctive API key and distinctive personal data sent through the proxy every way a
request can end, and neither found in any line; every line emitted while a request is
served carries its request id, tenant and route."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from billing.services import RateLimitSpec, Subject, rate_limit_create
from gateway_project.lib import logs
from tests import factories
from tests.conftest import forget_governance_counters
from tests.personas import Personas

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "jane.doe.4471@example.org"
CARD = "4111 1111 1111 1111"
PHONE = "+1 415 555 0199"
PII = f"Call me on {PHONE} or at {EMAIL}; my card is {CARD}."
# Fragments that would betray each of them however a line had reformatted them (none so
# short that a timestamp's microseconds or a random request id could hold it by chance).
PII_FRAGMENTS = (
    "jane.doe", "4471@", "example.org", "4111 1111", "41111111", "1111 1111", "415 555",
    "5550199",
)  # fmt: skip


@pytest.fixture(autouse=True)
async def fresh_governance() -> AsyncIterator[None]:
    await forget_governance_counters()
    yield
    await forget_governance_counters()


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """Every logger at DEBUG, written as the console handler writes them (JSON, with the
    request filter); returns a function that reads back the lines so far, parsed."""
    # A log context of its own, as the ASGI handler opens one per request: what a request
    # of an earlier test left in this thread (the synchronous test client) is not ours.
    logs.open_request()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json"))
    handler.addFilter(logs.RequestContextFilter())
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        if logger is logging.getLogger() or not logger.propagate:
            logger.addHandler(handler)
    yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    for logger, level, disabled in saved:
        logger.setLevel(level)
        logger.disabled = disabled
        logger.removeHandler(handler)


def fake_routes(personas: Personas, base_url: str) -> None:
    """acme's routes to the fake OpenAI server: `gpt` answers (echoing the prompt), `bad`
    is refused by it (400), `down` fails (500, retried, then 502)."""
    provider = factories.make_provider(
        "fake-openai", kind="openai", base_url=base_url, timeout_s=5, max_retries=1
    )
    for route, model in (("gpt", "ok"), ("bad", "fail-400"), ("down", "fail-500")):
        factories.make_route(
            route, factories.make_model(provider, model), tenant=personas.acme.tenant
        )
    # After a few requests, acme's requests to `gpt` are refused (429).
    rate_limit_create(subject=Subject.of(personas.acme.tenant), spec=RateLimitSpec(rpm=12))


async def send(key: str, model: str, *, stream: bool = False, content: object = PII):
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}
    response = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps(body),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}", "x-request-id": EMAIL},
    )
    if response.streaming:
        return response, b"".join([part async for part in response.streaming_content])
    return response, response.content


async def test_no_log_line_at_any_level_holds_the_key_or_the_personal_data(
    personas, fake_openai, fresh_circuits, log_lines
):
    await sync_to_async(fake_routes)(personas, fake_openai.openai_base_url)
    key = personas.acme.plaintext_key
    answer = (await send(key, "gpt"))[1]
    assert EMAIL.encode() in answer  # the upstream echoed it: the answer holds it too
    statuses = []
    for model, stream in (
        ("gpt", True),
        ("bad", False),
        ("down", False),
        ("down", True),
        ("echo", True),
        ("nope", False),
    ):
        statuses.append((await send(key, model, stream=stream))[0].status_code)
    statuses.append((await send(key, "gpt", content={"not": PII}))[0].status_code)
    statuses.append((await send(f"{key}x", "gpt"))[0].status_code)
    statuses.append((await send("gwk_" + "Zq9" * 12, "gpt"))[0].status_code)
    while (response := (await send(key, "gpt"))[0]).status_code == 200:
        statuses.append(200)
    statuses.append(response.status_code)
    assert {200, 400, 401, 404, 429, 502} <= set(statuses), statuses
    lines = log_lines()
    # The lines do hold what an operator needs: an ERROR for the 502s, DEBUG summaries.
    assert any(line["level"] == "ERROR" for line in lines)
    finished = [line for line in lines if line["message"].startswith("request finished")]
    assert len(finished) == len(statuses) + 1
    secret = key.split("_", 2)[-1]
    text = "\n".join(orjson.dumps(line).decode() for line in lines)
    assert key not in text and secret[-12:] not in text
    assert "Zq9Zq9" not in text
    for fragment in PII_FRAGMENTS:
        assert fragment not in text, fragment


async def test_every_line_of_a_request_carries_its_id_tenant_and_route(
    personas, fake_openai, fresh_circuits, log_lines
):
    await sync_to_async(fake_routes)(personas, fake_openai.openai_base_url)
    response, _ = await send(personas.acme.plaintext_key, "down")
    assert response.status_code == 502
    request_id = response["x-request-id"]
    mine = [line for line in log_lines() if line.get("request_id") == request_id]
    # Django's own ERROR for the 502 (a third-party logger), and the gateway's summary.
    assert {line["logger"] for line in mine} >= {"django.request", "routing.proxy.exchange"}
    for line in mine:
        assert (line["tenant"], line["route"]) == ("acme", "down"), line


async def test_a_line_before_the_tenant_is_known_has_the_request_id_alone(personas, log_lines):
    response, _ = await send("gwk_" + "Zq9" * 12, "echo")
    assert response.status_code == 401
    mine = [line for line in log_lines() if line.get("request_id") == response["x-request-id"]]
    assert mine
    for line in mine:
        assert "tenant" not in line and "route" not in line


def test_lines_outside_a_request_have_no_request_fields(log_lines):
    logging.getLogger("gateway.test").warning("outside")
    [line] = [line for line in log_lines() if line["message"] == "outside"]
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["level"] == "WARNING" and line["logger"] == "gateway.test"


def test_the_text_format_shows_dashes_outside_a_request():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    logs.RequestContextFilter().filter(record)
    line = logs.formatter("text").format(record)
    assert line.endswith(" INFO x [- - -] hello there")
