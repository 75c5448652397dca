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
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import httpx

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    """One version of a model's prices (USD per million tokens), in force from
    `effective_from` (billing.models.PriceVersion, passed down as data)."""

    version_id: int | None
    effective_from: datetime
    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Decimal:
        """Cached input tokens are part of the prompt tokens (as upstreams report them),
        priced at the cached price when there is one."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        total = (
            Decimal(prompt_tokens - cached) * self.input_per_million
            + Decimal(completion_tokens) * self.output_per_million
        )
        if cached:
            cached_price = self.cached_input_per_million
            total += Decimal(cached) * (
                self.input_per_million if cached_price is None else cached_price
            )
        return total / MILLION


_NO_TIME = datetime.min


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
    # The price book's version in force when the snapshot was built (None: no version,
    # the model's own columns), and the versions that take effect later, in order: a
    # scheduled price takes effect at its time, without waiting for a rebuild.
    price_version_id: int | None = None
    cached_input_per_million: Decimal | None = None
    later_prices: tuple[Price, ...] = field(default=(), hash=False, compare=False)

    def price_at(self, when: datetime | None) -> Price:
        """The price in force at `when` (a request's start)."""
        price = Price(
            self.price_version_id,
            _NO_TIME,
            self.input_per_million,
            self.output_per_million,
            self.cached_input_per_million,
        )
        if when is not None:
            for later in self.later_prices:
                if later.effective_from > when:
                    break
                price = later
        return price

    @property
    def key(self) -> str:
        """Stable name of this target across config rebuilds (circuit and latency state)."""
        return f"{self.provider_name}/{self.model}"

    def cost(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        *,
        at: datetime | None = None,
    ) -> Decimal:
        return self.price_at(at).cost(prompt_tokens, completion_tokens, cached_tokens)

    @property
    def highest_prices(self) -> tuple[Decimal, Decimal]:
        """The highest input and output prices this target may charge before the next
        rebuild (a scheduled rise included): what a reservation must cover."""
        inputs = [self.input_per_million, *(p.input_per_million for p in self.later_prices)]
        outputs = [self.output_per_million, *(p.output_per_million for p in self.later_prices)]
        return max(inputs), max(outputs)


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
