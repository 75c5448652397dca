"""Anthropic's Messages API, translated to and from the OpenAI chat format."""

from __future__ import annotations

from providers.anthropic.adapter import AnthropicProvider
from providers.anthropic.translate import TranslationError, to_messages_request

__all__ = ["AnthropicProvider", "TranslationError", "to_messages_request"]
