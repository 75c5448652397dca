"""A tenant's and an API key's request policy, checked on the proxy path before anything
is counted or sent upstream (pure: the policies come from the snapshot, no I/O)."""

from __future__ import annotations

from django.conf import settings

from gateway_project.lib import errors
from tenants.snapshot import KeyEntry, Policy, TenantEntry


def body_limit(policy: Policy) -> int:
    """The most body a caller may send: the gateway's limit, or its policy's if lower."""
    limit = settings.GATEWAY_MAX_BODY_BYTES
    own = policy.max_body_bytes
    return limit if own is None else min(limit, own)


def json_depth(value: object) -> int:
    """Nesting depth of parsed JSON, without recursion (a hostile body cannot blow the stack)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def requested_output_cap(body: dict) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) else None


def check_policy(
    *,
    tenant: TenantEntry,
    key: KeyEntry,
    route_name: str,
    body: dict,
    body_bytes: int,
    prompt_tokens: int,
) -> None:
    """Refuse requests outside the tenant's and key's policy (the key's is already the
    stricter of the two)."""
    if tenant.allowed_routes and route_name not in tenant.allowed_routes:
        raise errors.permission_denied(
            f"This tenant may not use the model or route '{route_name}'.", code="model_not_allowed"
        )
    policy = key.policy
    if policy.max_body_bytes is not None and body_bytes > policy.max_body_bytes:
        raise errors.payload_too_large(policy.max_body_bytes)
    _check_shape(policy, body)
    _check_output_cap(policy, body)
    if policy.max_prompt_tokens is not None and prompt_tokens > policy.max_prompt_tokens:
        raise errors.bad_request(
            f"The prompt has about {prompt_tokens} tokens; at most {policy.max_prompt_tokens} "
            "are allowed.",
            param="messages",
            code="policy_max_prompt_tokens",
        )


def _check_shape(policy: Policy, body: dict) -> None:
    """Nesting depth, message count and `n`."""
    depth_limit = min(
        settings.GATEWAY_MAX_JSON_DEPTH, policy.max_depth or settings.GATEWAY_MAX_JSON_DEPTH
    )
    if json_depth(body) > depth_limit:
        raise errors.bad_request(
            f"The request is nested deeper than {depth_limit} levels.", code="policy_max_depth"
        )
    messages = body.get("messages") or []
    if policy.max_messages is not None and len(messages) > policy.max_messages:
        raise errors.bad_request(
            f"At most {policy.max_messages} messages are allowed; got {len(messages)}.",
            param="messages",
            code="policy_max_messages",
        )
    n = body.get("n")
    if policy.max_n is not None and isinstance(n, int) and n > policy.max_n:
        raise errors.bad_request(
            f"'n' may be at most {policy.max_n}.", param="n", code="policy_max_n"
        )


def _check_output_cap(policy: Policy, body: dict) -> None:
    cap = requested_output_cap(body)
    if policy.max_output_tokens is not None and cap is not None and cap > policy.max_output_tokens:
        raise errors.bad_request(
            f"max_tokens may be at most {policy.max_output_tokens}; got {cap}.",
            param="max_tokens",
            code="policy_max_output_tokens",
        )


def output_cap(
    *, body: dict, route_default: int | None, policy_max: int | None, bounded: bool
) -> int | None:
    """The most output a request may produce: what it asked for, else the route's default,
    else the policy's maximum, else (when a budget must bound it) the gateway default."""
    cap = requested_output_cap(body) or route_default or policy_max
    if cap is None and bounded:
        cap = settings.GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS
    if cap is not None and policy_max is not None:
        cap = min(cap, policy_max)  # a route default never lifts the policy's ceiling
    return cap
