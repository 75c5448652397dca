"""A tenant's and a key's request policy (tenants/policy.py): depth, size, counts, output caps."""

from __future__ import annotations

import pytest

from gateway_project.lib.errors import GatewayError
from tenants.policy import check_policy, json_depth, output_cap, requested_output_cap
from tenants.snapshot import KeyEntry, Policy, TenantEntry

USER = [{"role": "user", "content": "Hello there"}]


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def caller(
    *, allowed_routes: frozenset[str] = frozenset(), **policy: int
) -> tuple[TenantEntry, KeyEntry]:
    tenant = TenantEntry(id=1, slug="acme", name="Acme", active=True, allowed_routes=allowed_routes)
    key = KeyEntry(
        id=1,
        prefix="gwk_test",
        key_hash="",
        name="test key",
        tenant_id=1,
        allowed_routes=frozenset(),
        expires_at=None,
        revoked=False,
        policy=Policy(**policy),
    )
    return tenant, key


def refuse(
    body: dict,
    *,
    body_bytes: int = 100,
    prompt_tokens: int = 10,
    route_name: str = "chat",
    allowed_routes: frozenset[str] = frozenset(),
    **policy: int,
) -> GatewayError:
    tenant, key = caller(allowed_routes=allowed_routes, **policy)
    with pytest.raises(GatewayError) as caught:
        check_policy(
            tenant=tenant,
            key=key,
            route_name=route_name,
            body=body,
            body_bytes=body_bytes,
            prompt_tokens=prompt_tokens,
        )
    return caught.value


def accept(
    body: dict,
    *,
    body_bytes: int = 100,
    prompt_tokens: int = 10,
    route_name: str = "chat",
    allowed_routes: frozenset[str] = frozenset(),
    **policy: int,
) -> None:
    tenant, key = caller(allowed_routes=allowed_routes, **policy)
    check_policy(
        tenant=tenant,
        key=key,
        route_name=route_name,
        body=body,
        body_bytes=body_bytes,
        prompt_tokens=prompt_tokens,
    )


def fields(error: GatewayError) -> tuple:
    return error.status, error.type, error.code, error.param


# --- json_depth --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        ("text", 0),
        (42, 0),
        ({}, 1),
        ([], 1),
        ({"a": 1, "b": "x"}, 1),
        ({"a": [1, {"b": []}]}, 4),
        ([{"a": {}}, [[[]]]], 4),
        ({"model": "m", "messages": USER}, 3),
    ],
)
def test_json_depth_counts_containers(value, depth):
    assert json_depth(value) == depth


def test_json_depth_survives_hostile_nesting_without_recursion():
    assert json_depth(nested(100_000)) == 100_000
    assert json_depth({"messages": nested(100_000)}) == 100_001


# --- check_policy ------------------------------------------------------------------------------


def test_a_request_inside_every_limit_passes():
    body = {"model": "chat", "messages": USER * 2, "n": 2, "max_tokens": 50}
    accept(
        body,
        body_bytes=500,
        prompt_tokens=20,
        allowed_routes=frozenset({"chat"}),
        max_body_bytes=500,
        max_messages=2,
        max_n=2,
        max_output_tokens=50,
        max_prompt_tokens=20,
        max_depth=3,
    )


def test_a_route_outside_the_tenants_allow_list_is_403():
    error = refuse({"messages": USER}, route_name="chat", allowed_routes=frozenset({"other"}))

    assert fields(error) == (403, "permission_error", "model_not_allowed", None)
    assert "'chat'" in error.message


def test_a_body_over_max_body_bytes_is_413():
    accept({"messages": USER}, body_bytes=1000, max_body_bytes=1000)
    error = refuse({"messages": USER}, body_bytes=1001, max_body_bytes=1000)

    assert fields(error) == (413, "invalid_request_error", "payload_too_large", None)
    assert "1000 bytes" in error.message


def test_a_body_nested_deeper_than_max_depth_is_400():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert json_depth(body) == 5
    accept(body, max_depth=5)
    error = refuse(body, max_depth=4)

    assert fields(error) == (400, "invalid_request_error", "policy_max_depth", None)
    assert "4 levels" in error.message


def test_the_gateway_depth_limit_caps_a_looser_policy(settings):
    settings.GATEWAY_MAX_JSON_DEPTH = 5
    body = {"messages": USER, "metadata": {"a": nested(5)}}

    error = refuse(body, max_depth=1000)

    assert error.code == "policy_max_depth"
    assert "5 levels" in error.message


def test_more_messages_than_max_messages_is_400():
    accept({"messages": USER * 3}, max_messages=3)
    error = refuse({"messages": USER * 4}, max_messages=3)

    assert fields(error) == (400, "invalid_request_error", "policy_max_messages", "messages")
    assert "got 4" in error.message


def test_an_n_above_max_n_is_400():
    accept({"messages": USER, "n": 2}, max_n=2)
    error = refuse({"messages": USER, "n": 3}, max_n=2)

    assert fields(error) == (400, "invalid_request_error", "policy_max_n", "n")


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_an_output_cap_above_max_output_tokens_is_400(field):
    accept({"messages": USER, field: 100}, max_output_tokens=100)
    error = refuse({"messages": USER, field: 101}, max_output_tokens=100)

    assert fields(error) == (400, "invalid_request_error", "policy_max_output_tokens", "max_tokens")
    assert "got 101" in error.message


def test_a_prompt_over_max_prompt_tokens_is_400():
    accept({"messages": USER}, prompt_tokens=100, max_prompt_tokens=100)
    error = refuse({"messages": USER}, prompt_tokens=101, max_prompt_tokens=100)

    assert fields(error) == (400, "invalid_request_error", "policy_max_prompt_tokens", "messages")
    assert "101" in error.message


def test_no_policy_means_no_limit():
    accept(
        {"messages": USER * 500, "n": 128, "max_tokens": 10**6},
        body_bytes=10**7,
        prompt_tokens=10**6,
    )


# --- output caps -------------------------------------------------------------------------------


def test_the_requested_cap_is_max_completion_tokens_else_max_tokens():
    assert requested_output_cap({"max_completion_tokens": 10, "max_tokens": 99}) == 10
    assert requested_output_cap({"max_tokens": 99}) == 99
    assert requested_output_cap({}) is None
    assert requested_output_cap({"max_tokens": "99"}) is None


def test_the_clients_own_cap_wins():
    body = {"max_tokens": 30}

    assert output_cap(body=body, route_default=200, policy_max=100, bounded=True) == 30


def test_without_a_client_cap_the_routes_default_applies():
    assert output_cap(body={}, route_default=200, policy_max=None, bounded=True) == 200


def test_without_a_route_default_the_policys_maximum_applies():
    assert output_cap(body={}, route_default=None, policy_max=100, bounded=False) == 100


def test_a_budget_bounds_an_otherwise_unbounded_request_with_the_gateway_default(settings):
    settings.GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS = 1234

    assert output_cap(body={}, route_default=None, policy_max=None, bounded=True) == 1234
    assert output_cap(body={}, route_default=None, policy_max=None, bounded=False) is None


def test_a_route_default_never_exceeds_the_policys_maximum():
    assert output_cap(body={}, route_default=4096, policy_max=100, bounded=False) == 100
