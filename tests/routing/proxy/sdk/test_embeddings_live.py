"""The official openai SDK's `embeddings.create` against a real gateway process: float and
base64 (the SDK's default), from the fake OpenAI upstream and from the stub, only from the
targets that name an embedding model; the audit row keeps the input, never the vectors."""

from __future__ import annotations

import base64
import math
import re
import struct
from io import StringIO

import openai
import pytest
from django.core.management import call_command

from tenants.keys import KEY_MARK
from tests import factories
from tests.fakes.openai_upstream import EMBEDDING_DIMENSIONS, fake_vector
from tests.fakes.upstreams import PROMPT_TOKENS
from tests.routing.proxy.sdk.support import audit_row

pytestmark = pytest.mark.django_db(transaction=True)


def vector(embedding: list[float] | str) -> list[float]:
    """The SDK decodes base64 itself only when it chose it (no `encoding_format` given)."""
    if isinstance(embedding, list):
        return embedding
    raw = base64.b64decode(embedding)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.fixture
def openai_embed(personas, models) -> str:
    """acme's route `gpt-embed`: the chat model `ok`, then `text-embedding-3-small`, both on
    the fake OpenAI upstream; embeddings skip the chat model."""
    fake = models[("fake-openai", "ok")].provider
    small = factories.make_model(fake, "text-embedding-3-small")
    factories.make_route(
        "gpt-embed", models[("fake-openai", "ok")], small, tenant=personas.acme.tenant
    )
    return "gpt-embed"


@pytest.mark.parametrize("encoding_format", ["float", "base64", None])
def test_the_sdk_embeds_through_an_openai_upstream(sdk, fake_openai, openai_embed, encoding_format):
    options = {"encoding_format": encoding_format} if encoding_format else {}
    raw = sdk.embeddings.with_raw_response.create(
        model=openai_embed, input=["Hi", "there"], **options
    )
    result = raw.parse()
    assert [vector(item.embedding) for item in result.data] == [
        fake_vector(text, EMBEDDING_DIMENSIONS) for text in ("Hi", "there")
    ]
    assert result.usage.prompt_tokens == PROMPT_TOKENS
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body["encoding_format"] == (encoding_format or "base64")
    assert sent.body["model"] == "text-embedding-3-small"
    row = audit_row(raw.headers["x-request-id"])
    assert (row.model, row.attempts) == ("text-embedding-3-small", 1)
    assert row.metadata["endpoint"] == "embeddings"
    assert row.prompt == [{"role": "user", "content": "Hi"}, {"role": "user", "content": "there"}]
    assert row.response == f"2 embeddings x {EMBEDDING_DIMENSIONS}"
    assert (row.prompt_tokens, row.completion_tokens) == (PROMPT_TOKENS, 0)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_the_sdk_gets_unit_vectors_from_the_stub(personas, sdk, encoding_format):
    stub = factories.make_provider("embed-stub", kind="stub")
    model = factories.make_model(stub, "stub-embed")
    factories.make_route("stub-embed", model, tenant=personas.acme.tenant)
    result = sdk.embeddings.create(
        model="stub-embed", input=[1, 2, 3], dimensions=32, encoding_format=encoding_format
    )
    [item] = result.data
    values = vector(item.embedding)
    assert len(values) == 32
    assert math.sqrt(sum(v * v for v in values)) == pytest.approx(1.0, abs=1e-6)
    assert result.usage.prompt_tokens == 3
    again = sdk.embeddings.create(model="stub-embed", input=[1, 2, 3], dimensions=32)
    assert again.data[0].embedding == pytest.approx(values, abs=1e-6)


def test_the_sdk_sees_a_chat_only_route_refused(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model="gpt", input="Hi")
    assert caught.value.code == "embeddings_not_supported"
    assert "'gpt'" in caught.value.message and "fake-openai/ok (openai)" in caught.value.message


def test_the_make_run_demo_embeds_out_of_the_box(gateway):
    """`seed_demo` (what `make run` calls) seeds `demo-embed`, and its banner's line works."""
    out = StringIO()
    call_command("seed_demo", stdout=out, stderr=StringIO())
    key = re.search(re.escape(KEY_MARK) + r"[A-Za-z0-9]{48}", out.getvalue()).group()
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0)
    vectors = client.embeddings.create(model="demo-embed", input="Hello!")
    assert len(vectors.data[0].embedding) == 1536
    assert vectors.model == "stub-embed"
