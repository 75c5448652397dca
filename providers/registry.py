"""Adapters by `Provider.kind`. Adding a vendor means one module and one line here."""

from __future__ import annotations

from providers.anthropic import AnthropicProvider
from providers.base import Provider
from providers.openai import AzureOpenAIProvider, OpenAIProvider
from providers.stub import StubProvider

_ADAPTERS: dict[str, Provider] = {
    "openai": OpenAIProvider(),
    "openai_compatible": OpenAIProvider(),
    "azure_openai": AzureOpenAIProvider(),
    "anthropic": AnthropicProvider(),
    "stub": StubProvider(),
}


def provider_for(kind: str) -> Provider:
    return _ADAPTERS[kind]
