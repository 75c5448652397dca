"""The upstream client's aiohttp session: proxy settings from the environment."""

from __future__ import annotations

import pytest

from providers.aiohttp_transport import new_upstream_client

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture
def no_proxy_environment(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_without_a_proxy_in_the_environment_the_session_does_not_look_for_one(
    no_proxy_environment,
):
    async with new_upstream_client() as client:
        session = client.upstream_transport._session()

        assert session.trust_env is False


async def test_a_proxy_in_the_environment_is_honoured(no_proxy_environment):
    no_proxy_environment.setenv("HTTPS_PROXY", "http://proxy.internal:3128")

    async with new_upstream_client() as client:
        session = client.upstream_transport._session()

        assert session.trust_env is True


async def test_a_client_told_not_to_trust_the_environment_ignores_its_proxy(
    no_proxy_environment,
):
    no_proxy_environment.setenv("HTTPS_PROXY", "http://proxy.internal:3128")

    async with new_upstream_client(trust_env=False) as client:
        session = client.upstream_transport._session()

        assert session.trust_env is False
