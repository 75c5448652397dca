"""Redacted copies of OpenAI-shaped payloads: chat messages, completions, request bodies.

What counts as text to redact: every string value a client or an upstream wrote, and the
keys of free-form maps (`metadata`), but not protocol enums (`role`, `type`...), which a
custom pattern must not turn into a request the provider refuses, nor base64 payloads
(inline images, audio, files), which hold bytes, not words. Nothing here modifies its
input: the same body is still read by the cache and the token counter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Redact = Callable[[str], str]

# String values that are protocol enums, not prose: a custom pattern that happened to
# match "user", "function" or "auto" must not turn a request into one the provider
# refuses. (Not inside `metadata`: there these are just the client's key names.)
PROTOCOL_KEYS = frozenset(
    {"role", "type", "format", "detail", "tool_choice", "reasoning_effort", "service_tier"}
)
# Free-form maps of the client's own: no key in them is protocol.
FREE_FORM_FIELDS = frozenset({"metadata"})
# Set by the gateway for each target, after redaction.
GATEWAY_OWNED_BODY_FIELDS = frozenset({"model"})
# Content parts whose payload is base64: a pattern matching inside one finds noise, not
# words, and rewriting it would corrupt the audio or file sent upstream.
ENCODED_PART_FIELDS = {"input_audio": "data", "file": "file_data"}


def _is_encoded(text: str) -> bool:
    """A `data:...;base64,` URL (an inline image or file): bytes, not text to redact."""
    return text.startswith("data:") and ";base64," in text[:256]


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data, much cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def walk(value: Any, redact: Redact, *, keys: bool = False, protocol: bool = True) -> Any:
    """A redacted deep copy of JSON-shaped data: every string value is redacted (and every
    key too when `keys`), except base64 payloads and, when `protocol`, protocol enums.
    The input is never modified: the same body is still read by the cache and the token
    counter."""
    if isinstance(value, str):
        return value if _is_encoded(value) else redact(value)
    if isinstance(value, list):
        return [walk(item, redact, keys=keys, protocol=protocol) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict = {}
    for key, item in value.items():
        new = walk_item(key, item, redact, keys=keys, protocol=protocol)
        if keys and isinstance(key, str):
            key = _free_key(out, redact(key))
        out[key] = new
    return out


def walk_item(key: Any, item: Any, redact: Redact, *, keys: bool, protocol: bool) -> Any:
    """The redacted copy of one value of a JSON object, whose key says what it is."""
    if protocol and isinstance(item, str) and key in PROTOCOL_KEYS:
        return item
    if protocol and isinstance(item, dict) and key in ENCODED_PART_FIELDS:
        encoded = ENCODED_PART_FIELDS[key]
        return {
            name: copy_json(part)
            if name == encoded
            else walk_item(name, part, redact, keys=keys, protocol=protocol)
            for name, part in item.items()
        }
    return walk(item, redact, keys=keys, protocol=protocol and key not in FREE_FORM_FIELDS)


def gather_item(key: Any, item: Any, out: list[str], *, protocol: bool) -> None:
    """Append to `out` every text `walk_item(key, item, ...)` would redact, and the keys
    (more text only makes audit.redaction choose more rules, never fewer). A loop, not
    recursion: this runs for every row and every upstream body, so it is kept tight."""
    append = out.append
    stack = [(key, item, protocol)]
    pop, push = stack.pop, stack.append
    while stack:
        key, item, protocol = pop()
        if isinstance(item, str):
            if not (protocol and key in PROTOCOL_KEYS) and not _is_encoded(item):
                append(item)
        elif isinstance(item, dict):
            encoded = ENCODED_PART_FIELDS.get(key) if protocol else None
            inner = protocol and key not in FREE_FORM_FIELDS
            for name, child in item.items():
                if isinstance(name, str):
                    append(name)
                if encoded is None or name != encoded:  # base64 payloads are not text
                    push((name, child, inner))
        elif isinstance(item, list):
            inner = protocol and key not in FREE_FORM_FIELDS
            for child in item:
                push((None, child, inner))


def _free_key(taken: dict, key: str) -> str:
    # Two keys redacted to the same text ("[EMAIL]") must not overwrite each other.
    if key not in taken:
        return key
    suffix = 2
    while f"{key}#{suffix}" in taken:
        suffix += 1
    return f"{key}#{suffix}"


def redact_message(message: Any, redact: Redact) -> Any:
    """A redacted copy of one chat message: content, content parts, `name`, tool call
    arguments (redacted in the JSON string itself, so their formatting is kept), refusals
    and any field a newer API version adds."""
    return walk(message, redact)


def redact_messages(messages: list, redact: Redact) -> list:
    """A redacted deep copy of OpenAI chat messages; the input is never modified."""
    if not isinstance(messages, list):
        return copy_json(messages)
    return [redact_message(message, redact) for message in messages]


def redact_completion(body: Any, redact: Redact) -> Any:
    """A redacted copy of a `chat.completion` (or legacy `text_completion`) response."""
    if not isinstance(body, dict):
        return copy_json(body)
    out = copy_json(body)
    choices = out.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if "message" in choice:
                choice["message"] = redact_message(choice["message"], redact)
            if isinstance(choice.get("text"), str):
                choice["text"] = redact(choice["text"])
    return out


def redact_value(value: Any, redact: Redact) -> Any:
    """A redacted copy of any JSON-shaped value: every string value in it is redacted."""
    return walk(value, redact)
