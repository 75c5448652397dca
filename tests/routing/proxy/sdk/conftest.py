"""The SDK tests' fixtures: the gateway process drained after each test, every scripted
behaviour of the fake OpenAI and Anthropic upstreams as a model, and the official sync and
async clients with acme's key. Here, so that only these tests start the gateway process."""

from __future__ import annotations

import openai
import pytest

from tests import factories
from tests.fakes.upstreams import refused_base_url
from tests.personas import Personas
from tests.routing.proxy.sdk.support import SCRIPTED, Models


@pytest.fixture(autouse=True)
def drain_the_server(gateway):
    yield
    gateway.drain()


@pytest.fixture
def models(personas: Personas, fake_openai, fake_anthropic) -> Models:
    """Each scripted behaviour of both fake upstreams as a model, by (provider, name), and
    one at an address nobody listens on; acme's routes `gpt`, `gpt-tools`, `claude` and
    `claude-tools` lead to the well-behaved ones."""
    # No retries here: these tests are about fallback; retries have their own tests.
    openai_fake = factories.make_provider(
        "fake-openai",
        kind="openai",
        base_url=fake_openai.openai_base_url,
        timeout_s=2,
        connect_timeout_s=1,
        max_retries=0,
    )
    anthropic_fake = factories.make_provider(
        "fake-anthropic",
        kind="anthropic",
        base_url=fake_anthropic.anthropic_base_url,
        timeout_s=2,
        connect_timeout_s=1,
        max_retries=0,
    )
    models = {
        (provider.name, name): factories.make_model(provider, name)
        for provider in (openai_fake, anthropic_fake)
        for name in SCRIPTED
    }
    refused = factories.make_provider(
        "refused", kind="openai", base_url=refused_base_url(), connect_timeout_s=1, max_retries=0
    )
    models[("refused", "ok")] = factories.make_model(refused, "ok")
    acme = personas.acme.tenant
    factories.make_route("gpt", models[("fake-openai", "ok")], tenant=acme)
    factories.make_route("gpt-tools", models[("fake-openai", "tools")], tenant=acme)
    factories.make_route("claude", models[("fake-anthropic", "ok")], tenant=acme)
    factories.make_route("claude-tools", models[("fake-anthropic", "tools")], tenant=acme)
    return models


@pytest.fixture
def sdk(personas: Personas, models: Models, gateway) -> openai.OpenAI:
    """The official client, calling the gateway process with acme's key."""
    return openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=personas.acme.plaintext_key, max_retries=0
    )


@pytest.fixture
def async_sdk(personas: Personas, models: Models, gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=personas.acme.plaintext_key, max_retries=0
    )
