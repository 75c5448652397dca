"""A stored chat.completion replayed as the chunks a stream would have sent.

The cache keeps the full chat.completion whatever the request that stored it asked for,
so a streaming request can be served from a non-streaming request's entry.
"""

from __future__ import annotations

REPLAY_CHUNK_CHARS = 200


def _pieces(text: str, size: int = REPLAY_CHUNK_CHARS) -> list[str]:
    """`text` in pieces of about `size` characters, cut after whitespace where possible."""
    pieces: list[str] = []
    while len(text) > size:
        cut = text.rfind(" ", size // 2, size) + 1 or size
        pieces.append(text[:cut])
        text = text[cut:]
    if text or not pieces:
        pieces.append(text)
    return pieces


def replay_chunks(completion: dict, *, include_usage: bool) -> list[dict]:
    """A stored chat.completion as the chat.completion.chunk dicts a stream would have sent:
    per choice the role first, the content (or refusal, or tool calls) in a few pieces,
    then the finish reason; and the usage chunk (no choices) when asked for."""
    base: dict = {
        "id": completion.get("id"),
        "object": "chat.completion.chunk",
        "created": completion.get("created"),
        "model": completion.get("model"),
    }
    for name in ("system_fingerprint", "service_tier"):
        if name in completion:
            base[name] = completion[name]
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict, finish: str | None = None) -> dict:
        return {
            **base,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }

    chunks: list[dict] = []
    for position, choice in enumerate(completion.get("choices") or ()):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        chunks.append(chunk(index, {"role": message.get("role") or "assistant", "content": ""}))
        content = message.get("content")
        if isinstance(content, str) and content:
            chunks.extend(chunk(index, {"content": piece}) for piece in _pieces(content))
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            chunks.extend(chunk(index, {"refusal": piece}) for piece in _pieces(refusal))
        for call_index, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            head = {
                "index": call_index,
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "function": {"name": function.get("name"), "arguments": ""},
            }
            chunks.append(chunk(index, {"tool_calls": [head]}))
            arguments = function.get("arguments") or ""
            if arguments:
                chunks.extend(
                    chunk(
                        index,
                        {"tool_calls": [{"index": call_index, "function": {"arguments": piece}}]},
                    )
                    for piece in _pieces(arguments)
                )
        chunks.append(chunk(index, {}, choice.get("finish_reason") or "stop"))
    usage = completion.get("usage")
    if include_usage and isinstance(usage, dict):
        chunks.append({**base, "choices": [], "usage": usage})
    return chunks
