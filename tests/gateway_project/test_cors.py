"""CORS on the proxy API, and the 405 envelope: through Django's test client and through the
production ASGI entry point (the proxy's own lean handler)."""

from __future__ import annotations

import httpx
import orjson
import pytest
from django.test import AsyncClient

from tests.conftest import assert_envelope

pytestmark = pytest.mark.django_db(transaction=True)

APP = "https://app.example.com"
PREFLIGHT = {
    "origin": APP,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type, x-stainless-new-thing",
}
USER = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def cors_on(settings):
    settings.GATEWAY_CORS_ALLOWED_ORIGINS = [APP, "http://localhost:5173"]
    settings.GATEWAY_CORS_MAX_AGE_SECONDS = 600


async def production(method: str, path: str, **kwargs) -> httpx.Response:
    """Through gateway_project.asgi.application, as uvicorn serves it."""
    from gateway_project.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, path, **kwargs)


async def test_a_preflight_is_answered_with_what_the_sdks_send(cors_on):
    response = await AsyncClient().options("/v1/chat/completions", headers=PREFLIGHT)

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == APP
    assert "POST" in response["Access-Control-Allow-Methods"]
    allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-api-key", "content-type", "anthropic-version", "x-route"} <= allowed
    assert "x-stainless-new-thing" in allowed
    assert response["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in response
    assert response["Vary"] == "Origin"


async def test_an_answer_to_an_allowed_origin_exposes_the_gateway_headers(cors_on, personas):
    response = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps({"model": "echo", "messages": USER}),
        content_type="application/json",
        headers={"authorization": f"Bearer {personas.acme.plaintext_key}", "origin": APP},
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == APP
    exposed = response["Access-Control-Expose-Headers"]
    for name in ("x-request-id", "x-gateway-provider", "retry-after", "x-ratelimit-reset-tokens"):
        assert name in exposed


async def test_errors_carry_the_cors_headers_too(cors_on, personas):
    response = await AsyncClient().get("/v1/models", headers={"origin": APP})

    assert_envelope(response, 401, "invalid_request_error", "invalid_api_key")
    assert response["Access-Control-Allow-Origin"] == APP


async def test_an_origin_not_listed_gets_no_cors_header(cors_on, personas):
    preflight = await AsyncClient().options(
        "/v1/chat/completions", headers={**PREFLIGHT, "origin": "https://evil.example"}
    )
    answer = await AsyncClient().get("/v1/models", headers={"origin": "https://evil.example"})

    assert preflight.status_code == 204
    assert "Access-Control-Allow-Origin" not in preflight
    assert "Access-Control-Allow-Origin" not in answer


async def test_a_wildcard_allows_any_origin_without_credentials(settings, personas):
    settings.GATEWAY_CORS_ALLOWED_ORIGINS = ["*"]

    response = await AsyncClient().options("/v1/models", headers=PREFLIGHT)

    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response


async def test_cors_is_off_by_default_and_a_preflight_is_then_a_405_envelope(personas):
    response = await AsyncClient().options("/v1/chat/completions", headers=PREFLIGHT)

    assert_envelope(response, 405, "invalid_request_error", "method_not_allowed")
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.parametrize("path", ["/admin/login/", "/api/v1/tenants/", "/health"])
def test_cors_never_applies_to_the_admin_or_the_management_api(cors_on, client, path):
    preflight = client.options(path, headers=PREFLIGHT)
    answer = client.get(path, headers={"origin": APP})

    assert "Access-Control-Allow-Origin" not in preflight
    assert "Access-Control-Allow-Origin" not in answer


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/chat/completions", "POST"),
        ("DELETE", "/v1/models", "GET"),
        ("POST", "/v1/models/echo", "GET"),
    ],
)
async def test_a_wrong_method_is_a_405_envelope_with_allow(personas, method, path, allow):
    response = await AsyncClient().generic(method, path)

    error = assert_envelope(response, 405, "invalid_request_error", "method_not_allowed")
    assert response["Allow"] == allow
    assert method in error["message"]


async def test_an_unknown_path_stays_a_404_envelope_whatever_the_method(personas):
    response = await AsyncClient().delete("/v1/no/such/thing")

    assert_envelope(response, 404, "invalid_request_error")


async def test_the_production_entry_point_answers_preflights_and_405s(cors_on, personas):
    preflight = await production("OPTIONS", "/v1/chat/completions", headers=PREFLIGHT)
    wrong = await production("GET", "/v1/chat/completions", headers={"origin": APP})
    models = await production(
        "GET",
        "/v1/models",
        headers={"origin": APP, "authorization": f"Bearer {personas.acme.plaintext_key}"},
    )

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == APP
    assert preflight.headers["x-request-id"].startswith("req_")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["access-control-allow-origin"] == APP
    assert models.status_code == 200
    assert "x-request-id" in models.headers["access-control-expose-headers"]
