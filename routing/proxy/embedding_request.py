"""Parse and check an OpenAI embeddings request (`POST /v1/embeddings`).

The shape of `input` is checked here (a string, a list of strings, a token array or a list
of token arrays), with `encoding_format`, `dimensions` and `user`; every other field is
passed through. The request travels through the stages as a `ChatRequest` (the route,
hints and pass-through body are the same things there), its inputs beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway_project.lib import errors
from providers.embeddings import Input, as_inputs
from providers.tokens import count_tokens
from routing.proxy.request import ChatRequest, parse_route_fields

MAX_INPUTS = 2048  # OpenAI's limit on the items of one request
ENCODING_FORMATS = ("float", "base64")


@dataclass
class EmbeddingRequest:
    chat: ChatRequest  # the body sent upstream, the route, the hints, the row's metadata
    inputs: list[Input]
    encoding_format: str  # what the client gets: "float" (OpenAI's default) or "base64"

    def input_tokens(self, kind: str) -> int:
        """The inputs' tokens as a provider kind's tokenizer counts them (tiktoken for the
        OpenAI family); a token array is its own count."""
        return sum(
            len(item) if isinstance(item, list) else count_tokens(item, kind)
            for item in self.inputs
        )

    def audit_prompt(self) -> list[dict]:
        """What the audit row keeps of the input (redacted by the writer): each text as a
        user message; a token array, which holds no readable text, as its length."""
        return [
            {
                "role": "user",
                "content": f"[{len(item)} tokens]" if isinstance(item, list) else item,
            }
            for item in self.inputs
        ]


def _is_token_array(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(token, int) and not isinstance(token, bool) for token in value)
    )


def _check_input(value: object) -> None:
    invalid = errors.bad_request(
        "'input' must be a non-empty string, an array of non-empty strings, an array of "
        "token ids, or an array of token-id arrays.",
        param="input",
    )
    if isinstance(value, str):
        if not value:
            raise invalid
        return
    if not isinstance(value, list) or not value:
        raise invalid
    if _is_token_array(value):
        items: list = [value]
    elif all(isinstance(item, str) for item in value) or all(
        isinstance(item, list) for item in value
    ):
        items = value
    else:
        raise invalid
    if len(items) > MAX_INPUTS:
        raise errors.bad_request(
            f"At most {MAX_INPUTS} inputs are allowed in one request; got {len(items)}.",
            param="input",
        )
    for index, item in enumerate(items):
        if isinstance(item, str) and item:
            continue
        if _is_token_array(item) and all(token >= 0 for token in item):
            continue
        raise errors.bad_request(
            f"input[{index}] must be a non-empty string or a non-empty array of token ids.",
            param=f"input[{index}]",
        )


def _check_options(body: dict) -> str:
    encoding_format = body.get("encoding_format")
    if encoding_format is not None and encoding_format not in ENCODING_FORMATS:
        raise errors.bad_request(
            "'encoding_format' must be 'float' or 'base64'.", param="encoding_format"
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1
    ):
        raise errors.bad_request("'dimensions' must be a positive integer.", param="dimensions")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise errors.bad_request("'user' must be a string.", param="user")
    return encoding_format or "float"


def parse_embedding_request(
    body: dict, *, route_header: str | None, headers: Mapping[str, str] | None = None
) -> EmbeddingRequest:
    chat = parse_route_fields(body, route_header=route_header, headers=headers)
    _check_input(body.get("input"))
    encoding_format = _check_options(body)
    return EmbeddingRequest(
        chat=chat, inputs=as_inputs(body["input"]), encoding_format=encoding_format
    )
