"""Usage an upstream reports is billed only within what is possible: a negative count must
not credit a budget, and a count no audit column holds must not bill more than is stored."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from routing.proxy.exchange import MAX_REPORTED_TOKENS, Exchange, usage_from


def exchange() -> Exchange:
    return Exchange(request=RequestFactory().post("/v1/chat/completions"))


@pytest.mark.parametrize(
    ("reported", "billed"),
    [
        ({"prompt_tokens": 12, "completion_tokens": 7}, (12, 7)),
        ({"prompt_tokens": -50, "completion_tokens": -3}, (0, 0)),
        ({"prompt_tokens": 3_000_000_000, "completion_tokens": 7}, (MAX_REPORTED_TOKENS, 7)),
        ({"prompt_tokens": "many", "completion_tokens": None}, (0, 0)),
        ({"prompt_tokens": 1e400, "completion_tokens": 1}, (0, 1)),
    ],
)
def test_it_bills_reported_usage_only_within_the_possible_range(reported, billed):
    seen = exchange()
    usage_from(seen, reported)
    assert (seen.prompt_tokens, seen.completion_tokens) == billed


def test_it_keeps_what_the_upstream_reported_out_of_range_on_the_row():
    seen = exchange()
    usage_from(seen, {"prompt_tokens": -50, "completion_tokens": 3_000_000_000})
    assert seen.metadata["usage_reported_out_of_range"] == {
        "prompt_tokens": "-50",
        "completion_tokens": "3000000000",
    }
    clean = exchange()
    usage_from(clean, {"prompt_tokens": 1, "completion_tokens": 2})
    assert "usage_reported_out_of_range" not in clean.metadata
