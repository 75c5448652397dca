"""What the fake OpenAI and Anthropic servers share (tests/fakes/openai_upstream.py and
tests/fakes/anthropic_upstream.py speak the real wire formats, JSON and SSE).

The upstream model name in the request picks the behaviour, so a gateway running in
another process drives them the same way as a test calling an adapter directly:

| model            | behaviour                                                          |
|------------------|--------------------------------------------------------------------|
| ok (and any other name) | answers "<GREETING> <last user or tool text>"                |
| tools            | calls every offered tool (at most 2) with TOOL_INPUT, unless the last message is a tool result |
| cache            | Anthropic: reports cache tokens (CACHE_* below)                    |
| stop-<reason>    | Anthropic: stop_reason <reason> (stop-max_tokens, stop-refusal, ...)|
| fail-400         | 400 with the vendor's error envelope (client error)                |
| fail-429         | 429 with `retry-after: 0`                                          |
| fail-500/502/503/529 | that status with the vendor's error envelope                   |
| stall            | sends nothing for STALL_SECONDS (until the client hangs up)        |
| midstream-drop   | two chunks (or half a JSON body), then the connection is cut       |
| error-after-200  | some content, then an error event (a 200 error body when not streamed) |
| error-at-start   | only the opening (role chunk / message_start), then an error event |
| truncated        | streams chunks and ends cleanly but without [DONE] / message_stop |

Usage is deterministic: PROMPT_TOKENS and COMPLETION_TOKENS. Anthropic streams send
`ping` events and two cumulative `message_delta` events, the last one carrying the
totals, to catch an adapter that adds them up.
"""

from __future__ import annotations

from tests.fakes.server import free_port as free_port
from tests.fakes.server import refused_base_url as refused_base_url

PROMPT_TOKENS = 11
COMPLETION_TOKENS = 7
CACHE_INPUT_TOKENS = 3
CACHE_READ_TOKENS = 100
CACHE_CREATION_TOKENS = 20
CREATED = 1_700_000_000
STALL_SECONDS = 30.0
TRICKLE_SECONDS = 0.3  # between chunks of the "trickle" model: slow, but alive
TOOL_INPUT = {"location": "Paris"}
OPENAI_GREETING = "fake-openai says:"
ANTHROPIC_GREETING = "fake-anthropic says:"
FAILURES = {
    "fail-400": 400,
    "fail-429": 429,
    "fail-500": 500,
    "fail-502": 502,
    "fail-503": 503,
    "fail-529": 529,
}


def last_text(messages: list) -> str:
    """Text of the last user or tool message, in either vendor's format."""
    for message in reversed(messages or []):
        if message.get("role") not in ("user", "tool"):
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = []
        for part in content or ():
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "tool_result":
                inner = part.get("content")
                texts.append(inner if isinstance(inner, str) else "")
        return " ".join(texts)
    return ""


def split3(text: str) -> list[str]:
    step = max(1, len(text) // 3)
    return [text[i : i + step] for i in range(0, len(text), step)]


def ends_with_tool_result(messages: list) -> bool:
    last = (messages or [{}])[-1]
    content = last.get("content")
    return last.get("role") == "tool" or (
        isinstance(content, list) and any(p.get("type") == "tool_result" for p in content)
    )
