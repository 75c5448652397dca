"""The Messages API translated both ways (routing/proxy/anthropic_*.py): requests into the
chat form, answers and streams back into Anthropic's, errors into its envelope; and, by
property, a streamed answer reassembles (by the anthropic SDK's own accumulator) to the
same message as the plain one."""

from __future__ import annotations

import itertools

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError
from routing.proxy.anthropic_answer import error_body, to_message
from routing.proxy.anthropic_request import to_chat_body
from routing.proxy.anthropic_stream import MessageFrames

PNG = "iVBORw0KGgo="


def translate(**body: object) -> dict:
    return to_chat_body({"model": "m", "max_tokens": 64, **body})


def test_text_and_system_become_chat_messages():
    chat = translate(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0.5,
        top_p=0.9,
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        stream=True,
    )
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief.\nBe kind."},
        {"role": "user", "content": "Hi"},
    ]
    assert (chat["max_tokens"], chat["temperature"], chat["top_p"]) == (64, 0.5, 0.9)
    assert (chat["stop"], chat["user"], chat["stream"]) == (["END"], "u-1", True)


def test_a_multi_turn_conversation_with_tool_use_and_results():
    chat = translate(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "Sunny"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ]
    )
    assert chat["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "Sunny"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]


def test_an_error_tool_result_says_so():
    chat = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "is_error": True,
                        "content": [{"type": "text", "text": "timeout"}],
                    }
                ],
            }
        ]
    )
    assert chat["messages"] == [{"role": "tool", "tool_call_id": "t1", "content": "Error: timeout"}]


def test_images_become_image_urls():
    chat = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                ],
            }
        ]
    )
    parts = chat["messages"][0]["content"]
    assert parts == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "w"}, {"type": "function", "function": {"name": "w"}}, None),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ],
)
def test_tools_and_tool_choice(choice, expected, parallel):
    tool = {"name": "w", "description": "Weather", "input_schema": {"type": "object"}}
    chat = translate(messages=[{"role": "user", "content": "x"}], tools=[tool], tool_choice=choice)
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "w", "description": "Weather", "parameters": {"type": "object"}},
        }
    ]
    assert chat["tool_choice"] == expected
    assert chat.get("parallel_tool_calls") == parallel


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": None},
        {"messages": []},
        {"messages": [{"role": "system", "content": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "s"}],
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "text/plain", "data": "x"},
                        }
                    ],
                }
            ]
        },
    ],
)
def test_what_cannot_be_expressed_is_a_bad_request(body):
    with pytest.raises(GatewayError) as caught:
        to_chat_body({"model": "m", "max_tokens": 8, **body})
    assert caught.value.status == 400


def completion(
    content: str | None, calls: list[tuple[str, str, str]], finish: str, usage: dict
) -> dict:
    message: dict = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in calls
        ]
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_finish_reasons_become_stop_reasons(finish, stop_reason):
    assert to_message(completion("x", [], finish, {}))["stop_reason"] == stop_reason


def test_an_answer_becomes_a_message_with_blocks_and_usage():
    usage = {
        "prompt_tokens": 30,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 10},
    }
    message = to_message(
        completion("Let me see.", [("c1", "w", '{"city": "Paris"}')], "tool_calls", usage)
    )
    assert message == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "gpt-x",
        "content": [
            {"type": "text", "text": "Let me see."},
            {"type": "tool_use", "id": "c1", "name": "w", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "output_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 10,
        },
    }


@pytest.mark.parametrize(
    ("failure", "status", "kind"),
    [
        (errors.bad_request("x"), 400, "invalid_request_error"),
        (errors.invalid_api_key(), 401, "authentication_error"),
        (errors.permission_denied("x"), 403, "permission_error"),
        (errors.model_not_found("x"), 404, "not_found_error"),
        (errors.payload_too_large(10), 413, "request_too_large"),
        (GatewayError(429, "slow down", type="rate_limit_error"), 429, "rate_limit_error"),
        (errors.internal_error(), 500, "api_error"),
        (errors.upstream_failed("x"), 502, "api_error"),
        (errors.upstream_failed("x", status=503), 503, "overloaded_error"),
        (errors.upstream_failed("x", status=504), 504, "api_error"),
    ],
)
def test_errors_take_anthropics_envelope(failure, status, kind):
    assert failure.status == status
    assert error_body(failure) == {
        "type": "error",
        "error": {"type": kind, "message": failure.message},
    }


def events(data: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in data.decode().split("\n\n"):
        if frame:
            name, payload = frame.split("\n")
            out.append((name.removeprefix("event: "), orjson.loads(payload.removeprefix("data: "))))
    return out


def chunks_of(answer: dict, cuts: st.DataObject) -> list[dict]:
    """The answer as an OpenAI-compatible upstream would stream it, cut at random places."""
    base = {
        "id": answer["id"],
        "object": "chat.completion.chunk",
        "created": 1,
        "model": answer["model"],
    }

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "usage": None,
        }

    def pieces(text: str) -> list[str]:
        points = sorted(cuts.draw(st.sets(st.integers(1, max(len(text) - 1, 1)), max_size=4)))
        bounds = [0, *[p for p in points if p < len(text)], len(text)]
        return [text[a:b] for a, b in itertools.pairwise(bounds) if text[a:b]]

    message = answer["choices"][0]["message"]
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in pieces(message["content"] or "")]
    for index, call in enumerate(message.get("tool_calls") or ()):
        head = {"index": index, "id": call["id"], "type": "function"}
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {**head, "function": {"name": call["function"]["name"], "arguments": ""}}
                    ]
                }
            )
        )
        for piece in pieces(call["function"]["arguments"]):
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    out.append(chunk({}, answer["choices"][0]["finish_reason"]))
    out.append({**base, "choices": [], "usage": answer["usage"]})
    return out


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
_INPUT = st.dictionaries(
    st.text(min_size=1, max_size=8), st.integers(-(10**9), 10**9) | st.text(max_size=10), max_size=3
)


@settings(max_examples=150, deadline=None)
@given(
    content=st.none() | _TEXT,
    calls=st.lists(st.tuples(st.text("abc", min_size=1, max_size=5), _INPUT), max_size=3),
    finish=st.sampled_from(["stop", "length", "tool_calls", "content_filter"]),
    prompt=st.integers(0, 10_000),
    cached=st.integers(0, 100),
    output=st.integers(0, 10_000),
    cuts=st.data(),
)
def test_a_streamed_answer_reassembles_to_the_plain_message(
    content, calls, finish, prompt, cached, output, cuts
):
    usage = {
        "prompt_tokens": prompt + cached,
        "completion_tokens": output,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    tool_calls = [
        (f"call_{i}", name, orjson.dumps(args).decode()) for i, (name, args) in enumerate(calls)
    ]
    answer = completion(content, tool_calls, finish, usage)
    frames = MessageFrames(input_tokens=3)
    data = b"".join(filter(None, (frames.chunk(c) for c in chunks_of(answer, cuts)))) + frames.end()
    snapshot = None
    buffers: dict[int, bytes] = {}
    names = []
    for name, payload in events(data):
        names.append(name)
        assert payload["type"] == name
        if name != "ping":
            snapshot = accumulate_event(event=payload, current_snapshot=snapshot, json_bufs=buffers)
    assert names[:2] == ["message_start", "ping"] and names[-2:] == [
        "message_delta",
        "message_stop",
    ]
    assert snapshot is not None
    streamed = snapshot.model_dump(
        exclude_none=True, exclude={"content": {"__all__": {"parsed_output"}}}
    )
    plain = to_message(answer)
    for block in plain["content"]:
        block.pop("citations", None)
    assert streamed["content"] == plain["content"]
    assert streamed["stop_reason"] == plain["stop_reason"]
    assert streamed["usage"] == plain["usage"]
    assert (streamed["id"], streamed["model"]) == (plain["id"], plain["model"])
