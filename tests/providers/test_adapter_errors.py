"""How each adapter fails, against the fake upstreams over real HTTP: every way a call can
go wrong becomes an UpstreamError (before the first chunk: another target may still answer)
or an UpstreamStreamError (after it: the client has seen content)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest

from providers.anthropic import AnthropicProvider
from providers.base import Provider, Target, UpstreamError, UpstreamStreamError
from providers.openai import OpenAIProvider
from tests.fakes.upstreams import refused_base_url
from tests.providers.support import chat, collect, target_for


@dataclass(frozen=True)
class Adapter:
    """One adapter, pointed at the fake server that speaks its upstream's wire format."""

    kind: str
    provider: Provider
    base_url: str

    def target(self, model: str, **options: object) -> Target:
        return target_for(self.base_url, model, kind=self.kind, **options)

    def target_at(self, base_url: str, model: str) -> Target:
        """The same adapter's target at another address (nobody listening, not a URL)."""
        return target_for(base_url, model, kind=self.kind)

    async def complete(self, model: str, client: httpx.AsyncClient, **options: object) -> dict:
        return await self.provider.complete(self.target(model, **options), chat(), client)

    def stream(self, model: str, client: httpx.AsyncClient, **options: object) -> AsyncIterator:
        return self.provider.stream(self.target(model, **options), chat(), client)


FAKES: dict[str, tuple[str, Callable[[], Provider]]] = {
    "openai": ("fake_openai", OpenAIProvider),
    "anthropic": ("fake_anthropic", AnthropicProvider),
}


@pytest.fixture(params=sorted(FAKES))
def adapter(request: pytest.FixtureRequest) -> Adapter:
    fake, provider = FAKES[request.param]
    return Adapter(request.param, provider(), request.getfixturevalue(fake).base_url)


def only(kind: str):
    """A case for one adapter only: the other upstream has no such failure to script."""
    return pytest.mark.parametrize("adapter", [kind], indirect=True)


# --- what is the same for both ---------------------------------------------------------------

FAILURES = [
    ("fail-400", 400, "client_error", False),
    ("fail-429", 429, "rate_limited", True),
    ("fail-500", 500, "server_error", True),
    ("fail-502", 502, "server_error", True),
    ("fail-503", 503, "server_error", True),
    ("fail-529", 529, "server_error", True),
]


@pytest.mark.parametrize(("model", "status", "kind", "retryable"), FAILURES)
async def test_a_failed_call_raises_the_matching_upstream_error(
    adapter, http_client, model, status, kind, retryable
):
    with pytest.raises(UpstreamError) as caught:
        await adapter.complete(model, http_client)

    assert (caught.value.status, caught.value.kind, caught.value.retryable) == (
        status,
        kind,
        retryable,
    )


@pytest.mark.parametrize(("model", "status", "kind", "retryable"), FAILURES)
async def test_a_failed_stream_raises_the_upstream_error_on_the_first_chunk(
    adapter, http_client, model, status, kind, retryable
):
    with pytest.raises(UpstreamError) as caught:
        await anext(adapter.stream(model, http_client))

    assert (caught.value.status, caught.value.kind, caught.value.retryable) == (
        status,
        kind,
        retryable,
    )


async def test_a_rate_limit_carries_the_retry_after(adapter, http_client):
    with pytest.raises(UpstreamError) as caught:
        await adapter.complete("fail-429", http_client)

    assert caught.value.retry_after == 0.0


@pytest.mark.parametrize("streamed", [False, True], ids=["call", "stream"])
async def test_a_refused_connection_is_a_retryable_connect_error(adapter, http_client, streamed):
    target = adapter.target_at(refused_base_url(), "ok")

    with pytest.raises(UpstreamError) as caught:
        if streamed:
            await anext(adapter.provider.stream(target, chat(), http_client))
        else:
            await adapter.provider.complete(target, chat(), http_client)

    assert (caught.value.kind, caught.value.retryable, caught.value.status) == (
        "connect_error",
        True,
        None,
    )


async def test_a_bad_base_url_is_a_connect_error(adapter, http_client):
    with pytest.raises(UpstreamError) as caught:
        await adapter.provider.complete(adapter.target_at("not a url", "ok"), chat(), http_client)

    assert caught.value.kind == "connect_error"


@pytest.mark.parametrize("streamed", [False, True], ids=["call", "stream before its first chunk"])
async def test_a_stalled_upstream_times_out(adapter, http_client, streamed):
    with pytest.raises(UpstreamError) as caught:
        if streamed:
            await anext(adapter.stream("stall", http_client, timeout_s=0.3))
        else:
            await adapter.complete("stall", http_client, timeout_s=0.3)

    assert (caught.value.kind, caught.value.retryable) == ("timeout", True)


async def test_a_body_cut_short_is_a_retryable_error(adapter, http_client):
    with pytest.raises(UpstreamError) as caught:
        await adapter.complete("midstream-drop", http_client)

    assert caught.value.retryable


async def test_a_dropped_connection_mid_stream_is_a_stream_error(adapter, http_client):
    chunks = []
    with pytest.raises(UpstreamStreamError) as caught:
        async for chunk in adapter.stream("midstream-drop", http_client):
            chunks.append(chunk)

    assert len(chunks) == CHUNKS_BEFORE_THE_DROP[adapter.kind]
    assert caught.value.kind == "connection_lost"


async def test_a_stream_that_ends_without_its_end_event_is_a_stream_error(adapter, http_client):
    """OpenAI's `[DONE]`, Anthropic's `message_stop`."""
    with pytest.raises(UpstreamStreamError) as caught:
        await collect(adapter.stream("truncated", http_client))

    assert caught.value.kind == "truncated"


# --- where the two upstreams' wire formats differ: the expectations as data -----------------

# A 400's error envelope, in OpenAI's form: Anthropic's has no `param` and no `code`.
CLIENT_ERROR_BODY = {
    "openai": {
        "message": "fake upstream failure 400",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "invalid_value",
    },
    "anthropic": {
        "message": "fake upstream failure 400",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    },
}
# The fakes cut the connection after two OpenAI chunks; two Anthropic events (message_start,
# content_block_start) make one chunk.
CHUNKS_BEFORE_THE_DROP = {"openai": 2, "anthropic": 1}
# An error event after some content: how many chunks came first, and the upstream's words.
ERROR_AFTER_CONTENT = {
    "openai": (2, "fake failure mid-stream"),
    "anthropic": (1, "Overloaded"),
}
# An error event right after the opening (role chunk / message_start): still a fallback.
ERROR_AT_START = {
    "openai": (200, "fake failure mid-stream"),
    "anthropic": (529, "Overloaded"),
}


async def test_a_client_error_carries_the_upstream_envelope_in_openai_form(adapter, http_client):
    with pytest.raises(UpstreamError) as caught:
        await adapter.complete("fail-400", http_client)

    assert caught.value.body == {"error": CLIENT_ERROR_BODY[adapter.kind]}


async def test_an_error_event_after_the_first_chunk_is_a_stream_error(adapter, http_client):
    chunks = []
    with pytest.raises(UpstreamStreamError) as caught:
        async for chunk in adapter.stream("error-after-200", http_client):
            chunks.append(chunk)

    count, words = ERROR_AFTER_CONTENT[adapter.kind]
    assert len(chunks) == count
    assert caught.value.kind == "upstream_error_event"
    assert words in caught.value.message


async def test_an_error_before_any_content_still_allows_a_fallback(adapter, http_client):
    with pytest.raises(UpstreamError) as caught:
        await anext(adapter.stream("error-at-start", http_client))

    status, words = ERROR_AT_START[adapter.kind]
    assert (caught.value.status, caught.value.kind, caught.value.retryable) == (
        status,
        "server_error",
        True,
    )
    assert caught.value.body["error"]["message"] == words


# --- a failure only the OpenAI fake scripts --------------------------------------------------


@only("openai")
async def test_an_error_body_with_status_200_is_a_bad_response(adapter, http_client):
    with pytest.raises(UpstreamError) as caught:
        await adapter.complete("error-after-200", http_client)

    assert (caught.value.kind, caught.value.retryable) == ("bad_response", True)
