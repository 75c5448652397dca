"""Which proxy endpoints a route serves, from its targets: one rule, used by `/v1/models`
(its `endpoints` field) and meant for the endpoint handlers choosing a route's targets.

A target serves
- `chat.completions` and `messages` when its model is not an embedding model, whatever
  its provider kind (Anthropic targets answer chat through translation, the others
  `/v1/messages` through translation; the stub answers both);
- `responses` likewise: passed through to providers that speak OpenAI's wire format
  (`openai`, `azure_openai`, `openai_compatible`), translated to a chat completion for the
  others (text, images and function tools; routing/proxy/responses_request.py answers a
  clear 400 for what does not translate);
- `embeddings` when its model is an embedding model and its provider has an embeddings
  API (the OpenAI family and the stub: Anthropic has none).

An embedding model is one whose upstream name says so (`embed` in it, as in
`text-embedding-3-small`, `nomic-embed-text`, `embed-english-v3.0`): the model table has
no column for it, and every vendor names them that way. A route serves an endpoint when
one of its enabled targets does.
"""

from __future__ import annotations

from collections.abc import Iterable

from providers.base import Target

CHAT_COMPLETIONS = "chat.completions"
MESSAGES = "messages"
RESPONSES = "responses"
EMBEDDINGS = "embeddings"
ENDPOINTS = (CHAT_COMPLETIONS, MESSAGES, RESPONSES, EMBEDDINGS)

OPENAI_WIRE_KINDS = frozenset({"openai", "azure_openai", "openai_compatible"})
EMBEDDING_KINDS = OPENAI_WIRE_KINDS | {"stub"}


def is_embedding_model(model: str) -> bool:
    return "embed" in model.lower()


def target_serves(target: Target, endpoint: str) -> bool:
    embedding = is_embedding_model(target.model)
    if endpoint == EMBEDDINGS:
        return embedding and target.kind in EMBEDDING_KINDS
    if embedding:
        return False
    return endpoint in (CHAT_COMPLETIONS, MESSAGES, RESPONSES)


def targets_serving(targets: Iterable[Target], endpoint: str) -> tuple[Target, ...]:
    """A route's targets that can serve `endpoint`, in their order."""
    return tuple(t for t in targets if target_serves(t, endpoint))


def endpoints_served(targets: Iterable[Target]) -> list[str]:
    """The endpoints a route with these targets serves, in `ENDPOINTS` order."""
    targets = tuple(targets)
    return [e for e in ENDPOINTS if any(target_serves(t, e) for t in targets)]
