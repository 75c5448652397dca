"""The small typed interface every upstream adapter implements.

An adapter speaks one vendor's wire format. It always takes an OpenAI-format chat
request (a dict, already carrying the upstream model name) and always gives back
OpenAI-format data: a `chat.completion` dict from `complete()`, and
`chat.completion.chunk` dicts from `stream()`. The proxy never sees a vendor format.

Failure rules the proxy relies on for fallback:
- `complete()` raises `UpstreamError` for anything that went wrong.
- `stream()` is an async generator. Anything that goes wrong before its first chunk is
  raised as `UpstreamError` from the first `__anext__()` (the proxy can still fall back
  then). After the first chunk, failures raise `UpstreamStreamError`.
- Streams always end with a usage chunk (`choices: []`, `usage: {...}`) when the
  upstream reports usage; the proxy strips it if the client did not ask for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

import httpx


@dataclass(frozen=True)
class Target:
    """One upstream model of one provider, compiled from the database into the snapshot."""

    provider_id: int
    provider_name: str
    kind: str
    base_url: str
    api_key_env: str
    model: str
    input_per_million: Decimal
    output_per_million: Decimal
    api_version: str = ""
    connect_timeout_s: float = 5.0
    timeout_s: float = 60.0
    stub_delay_ms: int = 0
    context_window: int | None = None
    weight: int = 1
    first_byte_timeout_s: float | None = None
    stream_idle_timeout_s: float | None = None
    max_retries: int = 1
    circuit_failure_threshold: int = 5
    circuit_cooldown_s: int = 30
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        """Stable name of this target across config rebuilds (circuit and latency state)."""
        return f"{self.provider_name}/{self.model}"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        million = Decimal(1_000_000)
        return (
            Decimal(prompt_tokens) * self.input_per_million
            + Decimal(completion_tokens) * self.output_per_million
        ) / million


class UpstreamError(Exception):
    """A failure before any byte reached the client.

    `retryable` failures (connect error, timeout, 429, 5xx) move on to the next target;
    others (a 400 from the upstream, say) are returned to the client as they are.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        kind: str = "upstream_error",
        body: dict | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.kind = kind  # connect_error | timeout | rate_limited | server_error | client_error | bad_response
        self.body = body
        self.retry_after = retry_after


class UpstreamStreamError(Exception):
    """A failure after the stream started: the client gets an error event, no fallback."""

    def __init__(self, message: str, *, kind: str = "stream_error") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class Provider(Protocol):
    async def complete(self, target: Target, body: dict, client: httpx.AsyncClient) -> dict: ...

    def stream(
        self, target: Target, body: dict, client: httpx.AsyncClient
    ) -> AsyncIterator[dict]: ...
