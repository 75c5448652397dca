"""Stored answers replayed as stream chunks (routing/cache/replay.py)."""

from __future__ import annotations

from routing import cache
from tests.routing.cache.support import body, completion, new_id, route

# --- replay as a stream ------------------------------------------------------------------


def test_replay_turns_a_completion_into_stream_chunks():
    text = " ".join(f"word{i}" for i in range(120))  # long enough to need several pieces
    chunks = cache.replay_chunks(completion(text), include_usage=True)

    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert {c["id"] for c in chunks} == {"chatcmpl-abc123"}
    assert {c["created"] for c in chunks} == {1_700_000_000}
    assert {c["model"] for c in chunks} == {"echo"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(content) >= 3
    assert "".join(content) == text
    assert chunks[-2]["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert all(c["usage"] is None for c in chunks[:-1])


def test_replay_without_usage_sends_no_usage_at_all():
    chunks = cache.replay_chunks(completion("Short."), include_usage=False)

    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Short."},
        {},
    ]
    assert all("usage" not in c for c in chunks)


def test_replay_streams_tool_calls_as_openai_does():
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    answer = completion(
        choices=[
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ]
    )

    deltas = [c["choices"][0]["delta"] for c in cache.replay_chunks(answer, include_usage=False)]

    assert deltas[1] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": ""},
            }
        ]
    }
    assert deltas[2] == {
        "tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]
    }
    assert deltas[-1] == {}


async def test_a_streaming_request_is_served_from_a_non_streaming_requests_entry():
    r, tenant = route(), new_id()
    await cache.store(r, tenant, body(), completion())

    answer = await cache.lookup(r, tenant, body(stream=True))

    assert answer is not None
    chunks = cache.replay_chunks(answer.completion, include_usage=False)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == (
        "Paris is the capital of France."
    )
