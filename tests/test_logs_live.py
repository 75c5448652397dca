"""A real gateway (uvicorn, two workers and their supervisor, started as `make serve` starts
them) writes nothing but JSON lines, and every line written while serving a proxy
request carries its request id, and its tenant and route once known."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests import factories
from tests.live import GatewayProcess, stop_quietly
from tests.personas import Personas

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

EMAIL = "jane.doe.4471@example.org"
PROMPT = [{"role": "user", "content": f"Write to {EMAIL}, card 4111 1111 1111 1111"}]


def fake_routes(personas: Personas, base_url: str) -> None:
    provider = factories.make_provider(
        "fake-openai", kind="openai", base_url=base_url, timeout_s=5, max_retries=0
    )
    for route, model in (("gpt", "ok"), ("down", "fail-500")):
        factories.make_route(
            route, factories.make_model(provider, model), tenant=personas.acme.tenant
        )


def post(gateway: GatewayProcess, key: str, model: str, **body: object) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        request = client.build_request(
            "POST",
            f"{gateway.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": model, "messages": PROMPT, **body},
        )
        response = client.send(request, stream=True)
        response.read()
        return response


def test_every_line_is_json_and_a_requests_lines_carry_it(personas, fake_openai, django_db_blocker):
    fake_routes(personas, fake_openai.openai_base_url)
    gateway = GatewayProcess(
        workers=2,
        args=("--log-config", "gateway_project/uvicorn_logging.json"),
        extra_env={"LOG_LEVEL": "DEBUG"},
    ).start()
    key = personas.acme.plaintext_key
    try:
        sent = {
            "ok": post(gateway, key, "gpt"),
            "stream": post(gateway, key, "gpt", stream=True),
            "echo": post(gateway, key, "echo"),
            "down": post(gateway, key, "down"),
            "wrong key": post(gateway, "gwk_" + "Zq9" * 12, "gpt"),
        }
        gateway.drain()
    finally:
        stop_quietly(gateway, django_db_blocker=django_db_blocker)
    assert [r.status_code for r in sent.values()] == [200, 200, 200, 502, 401]
    lines = [orjson.loads(line) for line in gateway.log().splitlines()]  # each one JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    messages = [line["message"] for line in lines]
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]  # --no-access-log
    assert any(m.startswith("Started parent process") for m in messages)  # the supervisor
    assert any(m.startswith("Application startup complete") for m in messages)  # a worker
    routes = {"ok": "gpt", "stream": "gpt", "echo": "echo", "down": "down"}
    for name, response in sent.items():
        mine = [
            line for line in lines if line.get("request_id") == response.headers["x-request-id"]
        ]
        [finished] = [line for line in mine if line["message"].startswith("request finished")]
        for line in mine:
            if name == "wrong key":
                assert "tenant" not in line and "route" not in line
                continue
            # Lines before the key is checked (a Redis read of the config's generation,
            # say) have the request id alone; the tenant, then the route, once known.
            assert line.get("tenant", "acme") == "acme", line
            assert line.get("route", routes[name]) == routes[name], line
            assert "tenant" in line or "route" not in line, line
        if name != "wrong key":
            assert (finished["tenant"], finished["route"]) == ("acme", routes[name])
    down = [
        line for line in lines if line.get("request_id") == sent["down"].headers["x-request-id"]
    ]
    assert any(line["logger"] == "django.request" and line["level"] == "ERROR" for line in down)
    text = gateway.log()
    assert key not in text
    assert EMAIL not in text
    # The card, spaced or not ("4111" alone could be a timestamp's microseconds).
    assert "4111 1111" not in text and "41111111" not in text
