"""Which endpoints a route serves, from its targets' provider kinds and model names."""

from __future__ import annotations

import pytest

from routing.endpoints import endpoints_served, is_embedding_model, targets_serving
from tests.providers.support import target_for

ALL_CHAT = ["chat.completions", "messages", "responses"]


@pytest.mark.parametrize(
    ("kind", "model", "expected"),
    [
        ("openai", "gpt-4o", ALL_CHAT),
        ("azure_openai", "my-deployment", ALL_CHAT),
        ("openai_compatible", "llama3", ALL_CHAT),
        ("anthropic", "claude-sonnet", ALL_CHAT),  # responses: translated to chat
        ("stub", "echo", ALL_CHAT),
        ("openai", "text-embedding-3-small", ["embeddings"]),
        ("stub", "stub-embed", ["embeddings"]),
        ("anthropic", "voyage-embed", []),
    ],
)
def test_a_single_target_route_serves_what_its_kind_and_model_allow(kind, model, expected):
    assert endpoints_served([target_for("", model, kind=kind)]) == expected


def test_a_route_serves_the_union_of_its_targets_in_a_fixed_order():
    targets = [
        target_for("", "text-embedding-3-large", kind="openai"),
        target_for("", "claude", kind="anthropic"),
    ]

    assert endpoints_served(targets) == [*ALL_CHAT, "embeddings"]
    assert [t.model for t in targets_serving(targets, "messages")] == ["claude"]
    assert endpoints_served([]) == []


def test_embedding_models_are_told_by_their_name():
    assert is_embedding_model("nomic-Embed-text") and is_embedding_model("embed-english-v3.0")
    assert not is_embedding_model("gpt-4o-mini")
