"""Redaction end to end: the default rules of a fresh install, every free-text column of
the audit row as the writer stores it, and what a fake upstream really receives."""

from __future__ import annotations

import time

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import AsyncClient

from audit.models import AuditEvent, RedactionRule
from audit.services import redaction_rule_upsert
from audit.writer import audit_writer
from providers.base import UpstreamError
from routing.proxy.exchange import Exchange, note_attempt

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_DEFAULTS = ("audit", "0002_auditevent_api_key_auditevent_route_id_and_more")
DEFAULTS = ("audit", "0003_default_redaction_rules")
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"


def migrate_audit_to(target: tuple[str, str]) -> None:
    MigrationExecutor(connection).migrate([target])
    if target == DEFAULTS:
        # And the later ones (adding columns), or the next tests find yesterday's table;
        # every app's: going back to 0002 also unapplied the billing migrations after it.
        MigrationExecutor(connection).migrate(
            MigrationExecutor(connection).loader.graph.leaf_nodes()
        )


def fresh_install_rules() -> None:
    """The rules a brand-new database ends up with: none, then the data migration."""
    migrate_audit_to(BEFORE_DEFAULTS)
    RedactionRule.objects.all().delete()
    migrate_audit_to(DEFAULTS)


async def post(key: str, body: dict, **headers: str):
    headers["authorization"] = f"Bearer {key}"
    return await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )


async def audit_row(response) -> AuditEvent:
    await sync_to_async(audit_writer.flush)()
    return await sync_to_async(AuditEvent.objects.get)(request_id=response["x-request-id"])


def stored_text(row: AuditEvent) -> str:
    """Every column of the row, as one string to search."""
    values = {field.attname: getattr(row, field.attname) for field in row._meta.fields}
    return orjson.dumps(values, default=str).decode()


# --- the default rules ------------------------------------------------------------------------
async def test_a_fresh_database_keeps_an_email_and_a_card_number_out_of_the_audit_row(personas):
    await sync_to_async(fresh_install_rules)()

    response = await post(
        personas.acme.plaintext_key,
        {"model": "echo", "messages": [{"role": "user", "content": f"I am {EMAIL}, {CARD}"}]},
    )

    assert response.status_code == 200
    answer = orjson.loads(response.content)["choices"][0]["message"]["content"]
    assert EMAIL in answer and CARD in answer  # the stub echoed both: masking upstream is opt-in
    row = await audit_row(response)
    text = stored_text(row)
    assert EMAIL not in text and CARD not in text and "4111" not in text
    assert row.prompt == [{"role": "user", "content": "I am [EMAIL], [CARD]"}]
    assert "[EMAIL], [CARD]" in row.response


def test_the_default_rules_are_ordinary_rules_for_the_audit_copy(transactional_db):
    fresh_install_rules()

    rules = list(RedactionRule.objects.order_by("position"))

    assert [rule.detector for rule in rules] == ["email", "api_key", "iban", "credit_card", "phone"]
    assert {rule.scope for rule in rules} == {RedactionRule.Scope.AUDIT}
    assert all(rule.enabled and not rule.pattern for rule in rules)
    for rule in rules:
        rule.full_clean()  # what the admin's form validates: each can be edited there


def test_the_defaults_leave_an_installs_own_rules_alone(transactional_db):
    migrate_audit_to(BEFORE_DEFAULTS)
    RedactionRule.objects.all().delete()
    RedactionRule.objects.create(name="mail", detector="email", enabled=False, position=7)

    migrate_audit_to(DEFAULTS)

    rules = list(RedactionRule.objects.order_by("position"))
    # A detector the install already has a rule for (even a disabled one) is not added.
    assert [rule.detector for rule in rules] == ["email", "api_key", "iban", "credit_card", "phone"]
    assert rules[0].name == "mail" and not rules[0].enabled
    assert [rule.position for rule in rules] == [7, 8, 9, 10, 11]


def test_undoing_the_migration_deletes_only_the_defaults_nobody_changed(transactional_db):
    fresh_install_rules()
    edited = RedactionRule.objects.get(detector="phone")
    edited.scope = RedactionRule.Scope.AUDIT_AND_UPSTREAM
    edited.save()

    migrate_audit_to(BEFORE_DEFAULTS)
    kept = list(RedactionRule.objects.values_list("detector", flat=True))
    migrate_audit_to(DEFAULTS)  # a later run leaves the database as the suite expects

    assert kept == ["phone"]


# --- every free-text column -------------------------------------------------------------------
@pytest.fixture
def mail_rule(personas):
    RedactionRule.objects.all().delete()
    redaction_rule_upsert(name="mail", detector="email", replacement="[EMAIL]")


async def test_the_user_tags_and_client_request_id_are_redacted_in_the_audit_row(
    personas, mail_rule
):
    response = await post(
        personas.acme.plaintext_key,
        {
            "model": "echo",
            "messages": [{"role": "user", "content": "Hello"}],
            "user": EMAIL,
            "x-gateway": {"metadata": {"customer": EMAIL, EMAIL: "vip"}},
        },
        **{"x-request-id": f"{EMAIL}:42"},
    )

    assert response.status_code == 200
    row = await audit_row(response)
    assert EMAIL not in stored_text(row)
    assert row.metadata["user"] == "[EMAIL]"
    assert row.metadata["tags"] == {"customer": "[EMAIL]", "[EMAIL]": "vip"}
    assert row.metadata["client_request_id"] == "[EMAIL]:42"


async def test_the_route_requested_model_and_error_message_are_redacted_in_the_audit_row(
    personas, mail_rule
):
    response = await post(
        personas.acme.plaintext_key,
        {"model": EMAIL, "messages": [{"role": "user", "content": "Hello"}]},
    )

    assert response.status_code == 404
    assert EMAIL in orjson.loads(response.content)["error"]["message"]  # the client's own words
    row = await audit_row(response)
    assert EMAIL not in stored_text(row)
    assert (row.route, row.requested_model) == ("[EMAIL]", "[EMAIL]")
    assert "[EMAIL]" in row.error_message


def test_the_attempt_log_is_redacted_as_the_writer_stores_it(personas, mail_rule, rf):
    """An upstream's error message often quotes the prompt back."""
    from routing.snapshot import snapshots

    snapshot = snapshots.get()
    target = snapshot.route_for(personas.acme.tenant.id, "echo").targets[0]
    request = rf.post("/v1/chat/completions")
    request.request_id = "req_attempts"
    exchange = Exchange(request=request, snapshot=snapshot)
    error = UpstreamError(f"Invalid 'messages[0]': {EMAIL} is not allowed", status=400)
    note_attempt(exchange, target, time.perf_counter(), error)
    exchange.record(outcome="upstream_error", status=400)
    audit_writer.flush()

    row = AuditEvent.objects.get(request_id="req_attempts")
    assert EMAIL not in stored_text(row)
    assert row.attempt_log[0]["error"] == "Invalid 'messages[0]': [EMAIL] is not allowed"
    assert (row.attempt_log[0]["status"], row.attempt_log[0]["provider"]) == (400, "local")


# --- what the upstream receives ---------------------------------------------------------------
def a_body_with_pii_outside_the_messages() -> dict:
    return {
        "model": "gpt",
        "messages": [
            {"role": "system", "content": f"Write to {EMAIL} only."},
            {"role": "user", "content": [{"type": "text", "text": f"I am {EMAIL}"}]},
        ],
        "user": EMAIL,
        "metadata": {"owner": EMAIL},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "send_mail",
                    "description": f"Sends a mail from {EMAIL}.",
                    "parameters": {
                        "type": "object",
                        "properties": {"to": {"type": "string", "default": EMAIL}},
                    },
                },
            }
        ],
        "tool_choice": "auto",
        "max_tokens": 20,
    }


async def test_an_upstream_rule_masks_the_user_and_a_tool_description_sent_upstream(
    personas, gpt, fake_openai
):
    await sync_to_async(redaction_rule_upsert)(
        name="mail", detector="email", replacement="[EMAIL]", scope="audit_and_upstream"
    )

    response = await post(personas.acme.plaintext_key, a_body_with_pii_outside_the_messages())

    assert response.status_code == 200, response.content
    sent = fake_openai.last.body
    assert EMAIL not in orjson.dumps(sent).decode()
    assert sent["user"] == "[EMAIL]"
    function = sent["tools"][0]["function"]
    assert function["description"] == "Sends a mail from [EMAIL]."
    assert function["parameters"]["properties"]["to"] == {"type": "string", "default": "[EMAIL]"}
    assert sent["metadata"] == {"owner": "[EMAIL]"}
    assert sent["messages"][0] == {"role": "system", "content": "Write to [EMAIL] only."}
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "I am [EMAIL]"}]
    # What the proxy itself sets or needs is as it was.
    assert (sent["model"], sent["max_tokens"], sent["tool_choice"]) == ("ok", 20, "auto")


async def test_an_audit_only_rule_leaves_what_is_sent_upstream_as_the_client_wrote_it(
    personas, gpt, fake_openai
):
    await sync_to_async(RedactionRule.objects.all().delete)()
    await sync_to_async(redaction_rule_upsert)(name="mail", detector="email")
    body = a_body_with_pii_outside_the_messages()

    response = await post(personas.acme.plaintext_key, body)

    assert response.status_code == 200, response.content
    sent = fake_openai.last.body
    assert (sent["user"], sent["metadata"], sent["tools"]) == (
        body["user"],
        body["metadata"],
        body["tools"],
    )
    assert EMAIL not in stored_text(await audit_row(response))
