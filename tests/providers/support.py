"""Helpers shared by the adapter tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

from providers.base import Target


def target_for(base_url: str, model: str, *, kind: str = "openai", **kwargs: object) -> Target:
    options: dict = {"connect_timeout_s": 2.0, "timeout_s": 5.0, **kwargs}
    return Target(
        provider_id=1,
        provider_name=f"fake-{kind}",
        kind=kind,
        base_url=base_url,
        api_key_env=options.pop("api_key_env", ""),
        model=model,
        input_per_million=Decimal("1"),
        output_per_million=Decimal("2"),
        **options,
    )


async def collect(stream: AsyncIterator[dict]) -> list[dict]:
    return [chunk async for chunk in stream]


def chat(text: str = "hello there", **fields: object) -> dict:
    return {"model": "alias", "messages": [{"role": "user", "content": text}], **fields}
