"""`GET /v1/models` and `GET /v1/models/{id}` in-process: what a key may use, with the
endpoints each route serves, and nothing about routes it may not use."""

from __future__ import annotations

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from tests import factories
from tests.conftest import assert_envelope, count_queries_everywhere

pytestmark = pytest.mark.django_db(transaction=True)


async def get(path: str, key: str | None):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return await AsyncClient().get(path, headers=headers)


async def test_the_list_tells_the_endpoints_each_route_serves(personas):
    response = await get("/v1/models", personas.acme.plaintext_key)

    assert response.status_code == 200
    by_id = {m["id"]: m for m in orjson.loads(response.content)["data"]}
    assert by_id["echo"]["endpoints"] == ["chat.completions", "messages", "responses"]
    assert by_id["acme-private"]["owned_by"] == "acme"


async def test_the_detail_is_the_model_object_of_a_route_the_key_may_use(personas):
    response = await get("/v1/models/acme-private", personas.acme.plaintext_key)

    assert response.status_code == 200
    assert orjson.loads(response.content) == {
        "id": "acme-private",
        "object": "model",
        "created": 0,
        "owned_by": "acme",
        "endpoints": ["chat.completions", "messages", "responses"],
    }
    shared = orjson.loads((await get("/v1/models/echo", personas.acme.plaintext_key)).content)
    assert shared["owned_by"] == "gateway"


async def test_the_detail_takes_ids_with_slashes_and_embedding_routes(personas, fake_openai):
    provider = await sync_to_async(factories.make_provider)(
        "oai", kind="openai", base_url=fake_openai.openai_base_url
    )
    model = await sync_to_async(factories.make_model)(provider, "text-embedding-3-small")
    await sync_to_async(factories.make_route)("openai/embed", model)

    response = await get("/v1/models/openai/embed", personas.globex.plaintext_key)

    assert response.status_code == 200
    assert orjson.loads(response.content)["endpoints"] == ["embeddings"]


async def test_another_tenants_private_route_is_not_found_as_if_it_did_not_exist(personas):
    theirs = await get("/v1/models/acme-private", personas.globex.plaintext_key)
    missing = await get("/v1/models/no-such-route", personas.globex.plaintext_key)

    error = assert_envelope(theirs, 404, "invalid_request_error", "model_not_found")
    assert error["message"] == assert_envelope(missing, 404, "invalid_request_error")[
        "message"
    ].replace("no-such-route", "acme-private")


async def test_a_route_outside_the_keys_allow_list_is_not_found(personas):
    limited = await sync_to_async(personas.acme.issue_key)(allowed_routes=["echo"])

    response = await get("/v1/models/acme-private", limited.plaintext)

    assert_envelope(response, 404, "invalid_request_error", "model_not_found")
    assert (await get("/v1/models/echo", limited.plaintext)).status_code == 200


async def test_the_detail_without_a_key_is_401(personas):
    assert_envelope(await get("/v1/models/echo", None), 401, "invalid_request_error")


async def test_a_warm_list_and_detail_make_no_database_query(personas):
    key = personas.acme.plaintext_key
    await get("/v1/models", key)  # warms up
    with count_queries_everywhere() as counter:
        for path in ("/v1/models", "/v1/models/echo", "/v1/models/acme-private", "/v1/models/x"):
            await get(path, key)
    assert counter.queries == []
