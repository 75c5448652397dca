"""Tenant and key request policies (allowed routes, body size, messages, choices, output
and prompt tokens, depth); through the proxy, in-process (ASGI handler, real database,
Redis or the in-process fakeredis for the counters)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from tests.conftest import assert_envelope
from tests.routing.proxy.admission.support import (
    CAP,
    USER,
    audit_row,
    chat,
    post,
)

pytestmark = pytest.mark.django_db(transaction=True)


# --- policies ----------------------------------------------------------------------------------


def set_policy(model_object, **fields: object) -> None:
    for name, value in fields.items():
        setattr(model_object, name, value)
    model_object.save()


DEEP_USER = [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]


@pytest.mark.parametrize(
    ("who", "policy", "body", "status", "type_", "code", "param"),
    [
        (
            "tenant",
            {"allowed_routes": ["other"]},
            chat(),
            403,
            "permission_error",
            "model_not_allowed",
            None,
        ),
        (
            "key",
            {"max_body_bytes": 200},
            chat(messages=[{"role": "user", "content": "x" * 300}]),
            413,
            "invalid_request_error",
            "payload_too_large",
            None,
        ),
        (
            "key",
            {"max_messages": 1},
            chat(messages=USER * 2),
            400,
            "invalid_request_error",
            "policy_max_messages",
            "messages",
        ),
        ("key", {"max_n": 1}, chat(n=2), 400, "invalid_request_error", "policy_max_n", "n"),
        (
            "key",
            {"max_output_tokens": CAP - 1},
            chat(),
            400,
            "invalid_request_error",
            "policy_max_output_tokens",
            "max_tokens",
        ),
        (
            "tenant",
            {"max_prompt_tokens": 5},
            chat(),
            400,
            "invalid_request_error",
            "policy_max_prompt_tokens",
            "messages",
        ),
        (
            "tenant",
            {"max_depth": 4},
            chat(messages=DEEP_USER),
            400,
            "invalid_request_error",
            "policy_max_depth",
            None,
        ),
    ],
)
async def test_a_request_outside_the_policy_is_refused_and_audited(
    personas, who, policy, body, status, type_, code, param
):
    subject = personas.acme.tenant if who == "tenant" else personas.acme.key
    await sync_to_async(set_policy)(subject, **policy)

    response = await post(personas.acme.plaintext_key, body)
    allowed = await post(personas.globex.plaintext_key, body)

    error = assert_envelope(response, status, type_, code)
    assert error["param"] == param
    row = await audit_row(response)
    assert (row.outcome, row.status_code, row.error_type) == ("rejected", status, code)
    assert (row.tenant_id, row.provider) == (personas.acme.tenant.id, "")
    assert allowed.status_code == 200  # the policy is acme's, not everyone's


async def test_a_keys_policy_tightens_its_tenants_and_never_loosens_it(personas, keys):
    await sync_to_async(set_policy)(personas.acme.tenant, max_messages=3, max_n=1)
    await sync_to_async(set_policy)(personas.acme.key, max_messages=1, max_n=5)
    key, untightened = personas.acme.plaintext_key, keys["acme's second key"]

    two_messages = await post(key, chat(messages=USER * 2))
    two_choices = await post(key, chat(n=2))

    error = assert_envelope(two_messages, 400, "invalid_request_error", "policy_max_messages")
    assert "At most 1 messages" in error["message"]
    error = assert_envelope(two_choices, 400, "invalid_request_error", "policy_max_n")
    assert "at most 1" in error["message"]
    assert (await post(untightened, chat(messages=USER * 2))).status_code == 200
    assert (await post(untightened, chat(messages=USER * 4))).status_code == 400
