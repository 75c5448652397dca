"""The audit log admin is read-only and never counts the whole table; redaction rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent, RedactionRule
from gateway_project.lib.paginator import EstimatedCountPaginator
from tests import factories

pytestmark = pytest.mark.django_db


def make_event(tenant=None, **fields: object) -> AuditEvent:
    values: dict[str, object] = {
        "request_id": "req_0123456789abcdef",
        "created_at": timezone.now(),
        "tenant": tenant,
        "tenant_slug": tenant.slug if tenant else "",
        "key_prefix": "gwk_AbCd1234",
        "route": "chat",
        "requested_model": "chat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "fallback_used": True,
        "attempts": 2,
        "outcome": AuditEvent.Outcome.SUCCESS,
        "status_code": 200,
        "latency_ms": 412,
        "ttft_ms": 120,
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "total_tokens": 42,
        "cost_usd": Decimal("0.0000215000"),
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Mail [EMAIL] about <b>the</b> invoice"},
        ],
        "response": "Done.",
        "attempt_log": [{"provider": "anthropic", "status": 529}, {"provider": "openai"}],
        "metadata": {"team": "billing"},
        "config_version": "abc123",
    }
    values.update(fields)
    return AuditEvent.objects.create(**values)


def test_the_audit_list_renders_without_counting_everything(admin_client, acme):
    make_event(acme)
    response = admin_client.get(reverse("admin:audit_auditevent_changelist"))
    assert response.status_code == 200
    cl = response.context["cl"]
    assert cl.full_result_count is None  # show_full_result_count = False
    assert isinstance(cl.paginator, EstimatedCountPaginator)
    content = response.content.decode()
    for text in ("acme", "chat", "openai", "gpt-4o-mini", "412 ms", "$0.000022"):
        assert text in content


def test_the_detail_page_reads_well_and_escapes_content(admin_client, acme):
    event = make_event(acme)
    response = admin_client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    for text in (
        "req_0123456789abcdef",
        "gwk_AbCd1234",
        "Be brief.",
        "Mail [EMAIL] about &lt;b&gt;the&lt;/b&gt; invoice",
        "&quot;status&quot;: 529",
        "&quot;team&quot;: &quot;billing&quot;",
        "120 ms",
        "abc123",
        reverse("admin:tenants_tenant_change", args=[acme.pk]),
    ):
        assert text in content, text
    assert "<b>the</b>" not in content
    assert 'name="_save"' not in content


def test_a_row_whose_tenant_was_deleted_still_names_it(admin_client):
    event = make_event(None, tenant_slug="gone")
    response = admin_client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    assert "gone (deleted)" in response.content.decode()


def test_audit_rows_cannot_be_added_changed_or_deleted(admin_client, acme):
    event = make_event(acme)
    assert admin_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:audit_auditevent_delete", args=[event.pk])).status_code
        == 403
    )
    assert (
        admin_client.post(
            reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert (
        admin_client.post(
            reverse("admin:audit_auditevent_change", args=[event.pk]), {"route": "tampered"}
        ).status_code
        == 403
    )
    event.refresh_from_db()
    assert event.route == "chat"


def test_search_matches_a_request_id_or_key_prefix_exactly(admin_client, acme):
    key = factories.make_key(acme).api_key
    other = factories.make_key(acme).api_key
    wanted = make_event(acme, request_id="req_wanted", api_key=key, key_prefix=key.prefix)
    make_event(acme, request_id="req_wanted_not", api_key=other, key_prefix=other.prefix)
    url = reverse("admin:audit_auditevent_changelist")

    for term in ("req_wanted", key.prefix):
        response = admin_client.get(url, {"q": term})
        assert list(response.context["cl"].result_list) == [wanted]
    assert list(admin_client.get(url, {"q": "req_want"}).context["cl"].result_list) == []


def test_the_paginator_stops_counting_at_its_cap(admin_client):
    for index in range(5):
        make_event(request_id=f"req_{index}")
    paginator = EstimatedCountPaginator(AuditEvent.objects.order_by("-created_at"), 2)
    paginator.cap = 3
    assert paginator.count == 3
    assert paginator.is_capped
    assert paginator.num_pages == 2

    exact = EstimatedCountPaginator(AuditEvent.objects.filter(request_id="req_1"), 2)
    assert exact.count == 1
    assert not exact.is_capped and not exact.is_estimate


# --- redaction rules ---


@pytest.mark.parametrize(
    "url", ["admin:audit_redactionrule_changelist", "admin:audit_redactionrule_add"]
)
def test_rule_pages_render(admin_client, url):
    RedactionRule.objects.create(name="emails", detector="email")
    assert admin_client.get(reverse(url)).status_code == 200


def test_a_regex_rule_needs_a_valid_pattern(admin_client):
    rules_before = RedactionRule.objects.count()  # the default rules, unless a test cleared them
    response = admin_client.post(
        reverse("admin:audit_redactionrule_add"),
        {
            "name": "ticket ids",
            "detector": "regex",
            "pattern": "TICKET-(",
            "replacement": "[TICKET]",
            "scope": "audit",
            "enabled": "on",
            "position": "0",
        },
    )
    assert "pattern" in response.context["adminform"].form.errors
    assert not RedactionRule.objects.filter(name="ticket ids").exists()
    assert RedactionRule.objects.count() == rules_before


def test_rules_are_enabled_and_ordered_from_the_list(admin_client, saved):
    rule = RedactionRule.objects.create(name="emails", detector="email", position=0)
    saved.clear()
    response = admin_client.post(
        reverse("admin:audit_redactionrule_changelist"),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(rule.pk),
            "form-0-position": "7",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.enabled, rule.position) == (False, 7)
    assert "RedactionRule" in saved  # post_save: the gateway rebuilds its snapshot


def test_a_regex_rule_edited_from_the_list_is_still_validated(admin_client):
    rule = RedactionRule.objects.create(name="tickets", detector="regex", pattern="TCK-[0-9]+")
    form = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": str(rule.pk),
        "form-0-enabled": "on",
        "form-0-position": "3",
        "_save": "Save",
    }
    # The list edits only enabled and position, but the model's clean() still runs.
    RedactionRule.objects.filter(pk=rule.pk).update(pattern="(a+)+")

    response = admin_client.post(reverse("admin:audit_redactionrule_changelist"), form)

    assert response.status_code == 200  # shown on the row, not a 500
    assert "pattern: The pattern nests" in response.content.decode()
    rule.refresh_from_db()
    assert rule.position == 0


def test_a_rule_can_be_tried_on_sample_text(admin_client):
    rule = RedactionRule.objects.create(name="emails", detector="email")
    url = reverse("admin:audit_redactionrule_test", args=[rule.pk])
    change = admin_client.get(reverse("admin:audit_redactionrule_change", args=[rule.pk]))
    assert url in change.content.decode()

    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"sample": "write to a@example.com"})
    assert response.status_code == 200
    assert response.context["result"] is not None
    assert 'id="redaction-result"' in response.content.decode()


def test_the_audit_list_makes_a_fixed_number_of_queries(
    admin_client, acme, globex, django_assert_max_num_queries
):
    for index in range(20):
        make_event(acme if index % 2 else globex, request_id=f"req_{index}")
    with django_assert_max_num_queries(8):
        response = admin_client.get(reverse("admin:audit_auditevent_changelist"))
    assert "globex" in response.content.decode()


def test_the_list_says_when_its_count_stopped_at_the_cap(admin_client, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "cap", 2)
    for index in range(3):
        make_event(request_id=f"req_{index}")
    response = admin_client.get(reverse("admin:audit_auditevent_changelist"))
    assert "more than 2 audit events" in response.content.decode()
