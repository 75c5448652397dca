from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.row import RedactionRules
from audit.writer import AuditWriter
from tests import factories
from tests.audit.rows import row


@pytest.mark.django_db
def test_it_writes_queued_rows_in_one_batch_and_keeps_their_order():
    writer = AuditWriter()
    for index in range(5):
        writer.record(row(f"req_{index}"))
    assert writer.pending() == 5
    writer.flush()
    assert writer.pending() == 0
    assert list(AuditEvent.objects.order_by("id").values_list("request_id", flat=True)) == [
        f"req_{index}" for index in range(5)
    ]
    assert AuditEvent.objects.get(request_id="req_0").cost_usd == Decimal("0.0000012345")


@pytest.mark.django_db(transaction=True)
def test_a_row_whose_tenant_was_deleted_meanwhile_is_kept_without_the_link():
    tenant = factories.make_tenant("gone")
    issued = factories.make_key(tenant)
    writer = AuditWriter()
    writer.record(row("req_ok"))
    writer.record(
        row(
            "req_orphan",
            tenant_id=tenant.id,
            tenant_slug="gone",
            api_key_id=issued.api_key.id,
            key_prefix=issued.api_key.prefix,
        )
    )
    tenant.delete()
    writer.flush()
    orphan = AuditEvent.objects.get(request_id="req_orphan")
    assert (orphan.tenant_id, orphan.api_key_id) == (None, None)
    assert (orphan.tenant_slug, orphan.key_prefix) == ("gone", issued.api_key.prefix)
    assert AuditEvent.objects.filter(request_id="req_ok").exists()


@pytest.mark.django_db
def test_the_prompt_is_redacted_by_the_writer_with_the_rules_of_the_request():
    from audit.models import RedactionRule

    rules = RedactionRules.of([RedactionRule(name="mail", detector="email", replacement="[EMAIL]")])
    writer = AuditWriter()
    writer.record(
        row(
            "req_pii",
            prompt=[{"role": "user", "content": "mail me at a.b@example.com"}],
            response="sure, a.b@example.com",
            rules=rules,
        )
    )
    writer.flush()
    stored = AuditEvent.objects.get(request_id="req_pii")
    assert stored.prompt == [{"role": "user", "content": "mail me at [EMAIL]"}]
    assert stored.response == "sure, [EMAIL]"


@pytest.mark.django_db
def test_keys_last_use_is_written_once_per_batch_and_at_most_once_a_minute(settings):
    settings.AUDIT_KEY_TOUCH_SECONDS = 60
    tenant = factories.make_tenant("busy")
    first, second = factories.make_key(tenant).api_key, factories.make_key(tenant).api_key
    start = timezone.now()
    writer = AuditWriter()
    for index, (key, offset) in enumerate([(first, 0), (second, 1), (first, 2)]):
        writer.record(
            row(f"req_{index}", api_key_id=key.id, created_at=start + timedelta(seconds=offset))
        )

    writer.flush()

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.last_used_at == start + timedelta(seconds=2)  # the latest of its rows
    assert second.last_used_at == start + timedelta(seconds=1)

    writer.record(row("req_soon", api_key_id=first.id, created_at=start + timedelta(seconds=30)))
    writer.record(row("req_later", api_key_id=second.id, created_at=start + timedelta(seconds=90)))
    writer.flush()

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.last_used_at == start + timedelta(seconds=2)  # within the minute: not written
    assert second.last_used_at == start + timedelta(seconds=90)


@pytest.mark.django_db
def test_every_kind_of_value_comes_back_as_it_was_written():
    """The batch travels as one JSON document on Postgres: text with quotes, backslashes,
    newlines and characters beyond the BMP, exact decimals, microseconds and JSON columns
    must all come back unchanged."""
    when = timezone.now().replace(microsecond=123456)
    prompt = [
        {"role": "system", "content": 'say "hi"\\n\tthen \\u0041 ünïcödé 🚀'},
        {"role": "user", "content": [{"type": "text", "text": "line one\nline two"}]},
    ]
    written = row(
        "req_kinds",
        created_at=when,
        prompt=prompt,
        response="It's {fine}: 100% \\ ok\r\n🚀",
        cost_usd=Decimal("1234.0123456789"),
        ttft_ms=None,
        latency_ms=42,
        stream=True,
        fallback_used=True,
        attempt_log=[{"target": "a", "status": 503, "ms": 1.5}],
        metadata={"tags": ["x", "y"], "nested": {"n": 1, "price": Decimal("0.10")}},
    )
    writer = AuditWriter()
    writer.record(written)
    writer.flush()

    stored = AuditEvent.objects.get(request_id="req_kinds")
    assert stored.created_at == when
    assert stored.prompt == prompt
    assert stored.response == "It's {fine}: 100% \\ ok\r\n🚀"
    assert stored.cost_usd == Decimal("1234.0123456789")
    assert (stored.ttft_ms, stored.latency_ms, stored.stream, stored.fallback_used) == (
        None,
        42,
        True,
        True,
    )
    assert stored.attempt_log == [{"target": "a", "status": 503, "ms": 1.5}]
    assert stored.metadata == {"tags": ["x", "y"], "nested": {"n": 1, "price": "0.10"}}
    assert (stored.error_message, stored.completion_tokens) == ("", 0)  # the defaults


@pytest.mark.django_db
def test_a_row_whose_redaction_fails_lands_with_every_free_text_field_withheld(monkeypatch):
    def broken(rules: object, fields: dict) -> dict:
        fields["response"] = "half done"  # and it stopped half-way through
        raise RuntimeError("a bug in redaction")

    monkeypatch.setattr("audit.store.redact_row", broken)
    writer = AuditWriter()
    writer.record(
        row(
            "req_broken",
            prompt=[{"role": "user", "content": "mail jane@example.com"}],
            response="jane@example.com",
            error_message="upstream said jane@example.com is invalid",
            metadata={"user": "jane@example.com", "tags": {"team": "jane@example.com"}},
            attempt_log=[{"error": "jane@example.com"}],
        )
    )
    writer.flush()
    stored = AuditEvent.objects.get(request_id="req_broken")
    assert "jane@example.com" not in repr(
        [stored.prompt, stored.response, stored.error_message, stored.metadata, stored.attempt_log]
    )
    assert stored.metadata["audit_prepare_failed"] == "RuntimeError"
