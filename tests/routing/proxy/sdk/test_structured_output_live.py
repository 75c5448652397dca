"""Structured output and forced tool calls with the official openai SDK against the
`make run` demo: the configuration `seed_demo` writes (global routes `demo`, `echo` and
`demo-embed` on the offline stub), served by a real gateway process."""

from __future__ import annotations

import re
from io import StringIO

import openai
import pytest
from django.core.management import call_command
from openai import pydantic_function_tool
from pydantic import BaseModel

from tenants.keys import KEY_MARK

pytestmark = pytest.mark.django_db(transaction=True)


class Step(BaseModel):
    explanation: str
    output: str


class MathReasoning(BaseModel):
    steps: list[Step]
    final_answer: str
    confidence: float | None
    check: Step | None


class LookUp(BaseModel):
    city: str
    days: int


ASK = [{"role": "user", "content": "Solve 8x + 7 = -23"}]


@pytest.fixture
def demo(gateway) -> openai.OpenAI:
    out = StringIO()
    call_command("seed_demo", stdout=out, stderr=StringIO())
    key = re.search(re.escape(KEY_MARK) + r"[A-Za-z0-9]{48}", out.getvalue()).group()
    return openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0)


def test_parse_with_a_pydantic_model_works_against_the_demo_route(demo):
    completion = demo.chat.completions.parse(
        model="demo", messages=ASK, response_format=MathReasoning, n=2
    )

    assert [choice.index for choice in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert isinstance(choice.message.parsed, MathReasoning)
        assert choice.message.parsed.check is not None
    assert completion.usage.completion_tokens > 0


def test_a_streamed_parse_works_against_the_demo_route(demo):
    with demo.chat.completions.stream(
        model="demo", messages=ASK, response_format=MathReasoning
    ) as stream:
        for _event in stream:
            pass
        final = stream.get_final_completion()

    assert isinstance(final.choices[0].message.parsed, MathReasoning)


def test_json_mode_answers_a_json_object(demo):
    completion = demo.chat.completions.create(
        model="echo", messages=ASK, response_format={"type": "json_object"}
    )

    assert completion.choices[0].message.content.startswith("{")


def test_a_required_strict_tool_call_parses_into_its_model(demo):
    completion = demo.chat.completions.parse(
        model="demo",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[pydantic_function_tool(LookUp)],
        tool_choice="required",
    )

    [call] = completion.choices[0].message.tool_calls
    assert isinstance(call.function.parsed_arguments, LookUp)
    assert completion.choices[0].finish_reason == "tool_calls"


def test_the_sdk_lists_and_retrieves_the_demo_routes(demo):
    listed = {model.id: model for model in demo.models.list()}
    model = demo.models.retrieve("demo")

    assert {"demo", "echo", "demo-embed"} <= set(listed)
    assert (model.id, model.owned_by) == ("demo", "gateway")
    assert model.model_extra["endpoints"] == ["chat.completions", "messages", "responses"]
    assert listed["demo-embed"].model_extra["endpoints"] == ["embeddings"]
    with pytest.raises(openai.NotFoundError) as caught:
        demo.models.retrieve("somebody-elses")
    assert caught.value.code == "model_not_found"
