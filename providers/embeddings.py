"""Embeddings (`POST /v1/embeddings`): which provider kinds can create them, and how.

The OpenAI family (OpenAI, OpenAI-compatible servers, Azure OpenAI) calls `{base}/embeddings`
(Azure: the deployment's path) and hands back the upstream's `list` of `embedding` objects
as it came; `encoding_format` is passed through, and `encode_vectors()` converts afterwards
only when an upstream ignored it. The stub answers deterministic unit vectors, seeded from
a hash of each input, so the same input always gets the same vector. Anthropic offers no
embeddings API: `embedder_for("anthropic")` is None and the proxy skips such targets.

An input is a string or a token array (a list of ints); the proxy has checked its shape.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
from typing import Protocol

import httpx
import orjson

from providers.base import Target, UpstreamError
from providers.calls import api_key, post_json
from providers.openai import AZURE_DEFAULT_API_VERSION
from providers.tokens import estimate_tokens

Input = str | list[int]
# What the stub answers without `dimensions`: the model's own size where it is known.
DEFAULT_DIMENSIONS = 1536
MODEL_DIMENSIONS = {
    "text-embedding-3-large": 3072,
    "text-embedding-3-small": 1536,
    "text-embedding-ada-002": 1536,
}
MAX_STUB_DIMENSIONS = 8192


class Embedder(Protocol):
    async def embed(self, target: Target, body: dict, client: httpx.AsyncClient) -> dict: ...


class OpenAIEmbedder:
    """Kinds `openai` and `openai_compatible`: POST {base_url}/embeddings."""

    def url(self, target: Target) -> str:
        return f"{target.base_url}/embeddings"

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    async def embed(self, target: Target, body: dict, client: httpx.AsyncClient) -> dict:
        headers = {"content-type": "application/json", "accept": "application/json"}
        key = api_key(target)
        if key:
            headers.update(self.auth_headers(key))
        payload = {**body, "model": target.model}
        data = await post_json(client, target, self.url(target), headers, payload)
        if not isinstance(data.get("data"), list):
            error = data.get("error")
            raise UpstreamError(
                "upstream answered 200 without embeddings",
                status=200,
                kind="bad_response",
                body=data if isinstance(error, dict) else None,
            )
        return data


class AzureEmbedder(OpenAIEmbedder):
    """Kind `azure_openai`: the model is the deployment name, the key goes in `api-key`."""

    def url(self, target: Target) -> str:
        version = target.api_version or AZURE_DEFAULT_API_VERSION
        return (
            f"{target.base_url}/openai/deployments/{target.model}/embeddings?api-version={version}"
        )

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"api-key": key}


class StubEmbedder:
    """Kind `stub`: a unit vector per input, the same for the same input and size."""

    async def embed(self, target: Target, body: dict, client: httpx.AsyncClient) -> dict:
        inputs = as_inputs(body.get("input"))
        size = body.get("dimensions") or MODEL_DIMENSIONS.get(target.model, DEFAULT_DIMENSIONS)
        if size > MAX_STUB_DIMENSIONS:
            raise UpstreamError(
                f"The stub makes at most {MAX_STUB_DIMENSIONS} dimensions; got {size}.",
                status=400,
                kind="client_error",
                retryable=False,
                body={
                    "error": {
                        "message": f"'dimensions' must be at most {MAX_STUB_DIMENSIONS}.",
                        "type": "invalid_request_error",
                        "param": "dimensions",
                        "code": None,
                    }
                },
            )
        if target.stub_delay_ms:
            await asyncio.sleep(target.stub_delay_ms / 1000)
        data = [
            {"object": "embedding", "index": index, "embedding": unit_vector(item, size)}
            for index, item in enumerate(inputs)
        ]
        tokens = sum(input_tokens_estimate(item) for item in inputs)
        answer = {
            "object": "list",
            "data": data,
            "model": target.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        encode_vectors(answer, body.get("encoding_format") or "float")
        return answer


_EMBEDDERS: dict[str, Embedder] = {
    "openai": OpenAIEmbedder(),
    "openai_compatible": OpenAIEmbedder(),
    "azure_openai": AzureEmbedder(),
    "stub": StubEmbedder(),
}


def embedder_for(kind: str) -> Embedder | None:
    """The kind's embeddings adapter; None for a kind that offers no embeddings API."""
    return _EMBEDDERS.get(kind)


def as_inputs(value: object) -> list[Input]:
    """The request's `input` as a list of inputs (a string, or one token array, is one)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, int) for item in value):
        return [value]
    return list(value) if isinstance(value, list) else []


def input_tokens_estimate(item: Input) -> int:
    return len(item) if isinstance(item, list) else estimate_tokens(item)


def unit_vector(item: Input, size: int) -> list[float]:
    """`size` components from a hash of `item`, scaled to length 1 (a shorter size is the
    longer one's prefix, renormalised)."""
    seed = item.encode() if isinstance(item, str) else orjson.dumps(item)
    stream = hashlib.shake_256(b"stub-embedding\0" + seed).digest(4 * size)
    raw = [value / 2_147_483_648 - 1.0 for value in struct.unpack(f"<{size}I", stream)]
    norm = math.sqrt(math.fsum(value * value for value in raw)) or 1.0
    return [value / norm for value in raw]


def to_base64(vector: list[float]) -> str:
    """OpenAI's base64 format: the vector as little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def from_base64(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))


def encode_vectors(answer: dict, encoding_format: str) -> None:
    """Each embedding in `answer` in the format the client asked for, in place (an upstream
    that ignored `encoding_format` answered the other one)."""
    for item in answer.get("data") or ():
        if not isinstance(item, dict):
            continue
        vector = item.get("embedding")
        if encoding_format == "base64" and isinstance(vector, list):
            item["embedding"] = to_base64(vector)
        elif encoding_format == "float" and isinstance(vector, str):
            item["embedding"] = from_base64(vector)


def dimensions_of(answer: dict) -> int:
    """The size of the first vector of `answer`, in either format (0 when there is none)."""
    data = answer.get("data") or ()
    first = data[0].get("embedding") if data and isinstance(data[0], dict) else None
    if isinstance(first, list):
        return len(first)
    if isinstance(first, str):
        return (len(first) * 3 // 4 - first.count("=")) // 4
    return 0
