"""The redaction rule's "try it" box: the rule as typed in the form, not yet saved, run on a
sample by the gateway's own redaction code, alone or within the whole rule set."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import RedactionRule
from tests.gateway_project.management_api import make_staff, session

pytestmark = pytest.mark.django_db

TRY = reverse("admin:audit_redactionrule_try")


def typed(**changes: str) -> dict[str, str]:
    """The change form's fields as a browser sends them, with `changes`."""
    data = {
        "name": "tickets",
        "detector": "regex",
        "pattern": "TICKET-[0-9]+",
        "replacement": "[TICKET]",
        "scope": "audit",
        "enabled": "on",
        "position": "0",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def tried(
    client, sample: str, *, rule: RedactionRule | None = None, within: str = "rule", **fields
):
    data = typed(**fields) | {"_try_sample": sample, "_try_scope": within}
    if rule is not None:
        data["_try_rule"] = str(rule.pk)
    return client.post(TRY, data)


@pytest.fixture
def no_rules(db):
    """Without the default rules (e-mail, keys, ...) the migrations install."""
    RedactionRule.objects.all().delete()


def test_the_form_has_the_try_box(admin_client):
    rule = RedactionRule.objects.create(name="emails", detector="email")
    for url in (
        reverse("admin:audit_redactionrule_change", args=[rule.pk]),
        reverse("admin:audit_redactionrule_add"),
    ):
        content = admin_client.get(url).content.decode()
        for element in (
            'id="redaction-try-sample"',
            'id="redaction-try-button"',
            'id="redaction-try-scope-rule"',
            'id="redaction-try-scope-all"',
            'id="redaction-try-output"',
            'id="redaction-try-upstream"',
            'id="redaction-try-error"',
            f'data-url="{TRY}"',
        ):
            assert element in content, (url, element)
    change = admin_client.get(reverse("admin:audit_redactionrule_change", args=[rule.pk]))
    assert f'data-rule="{rule.pk}"' in change.content.decode()


def test_the_rule_is_tried_as_typed_not_as_saved(admin_client):
    rule = RedactionRule.objects.create(
        name="tickets", detector="regex", pattern="TICKET-[0-9]+", replacement="[T]"
    )

    response = tried(
        admin_client, "ORDER-12 and TICKET-34", rule=rule, pattern="ORDER-[0-9]+", replacement="[O]"
    )

    assert response.status_code == 200
    assert response.json() == {
        "audit": "[O] and TICKET-34",
        "upstream": "ORDER-12 and TICKET-34",  # an audit-only rule leaves the upstream copy
        "rules": ["tickets"],
    }
    rule.refresh_from_db()
    assert (rule.pattern, rule.replacement) == ("TICKET-[0-9]+", "[T]")  # nothing saved


def test_a_new_rule_is_tried_from_the_add_form(admin_client):
    response = tried(
        admin_client,
        "mail jane.doe@example.com",
        name="emails",  # the default rules have one so named: a try does not mind
        detector="email",
        pattern="",
        replacement="[EMAIL]",
        scope="audit_and_upstream",
    )

    assert response.status_code == 200
    assert response.json()["audit"] == "mail [EMAIL]"
    assert response.json()["upstream"] == "mail [EMAIL]"
    assert not RedactionRule.objects.filter(
        replacement="[EMAIL]", scope="audit_and_upstream"
    ).exists()


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("TICKET-(", "pattern: Invalid regular expression: missing ), unterminated subpattern"),
        ("(a+)+", "pattern: The pattern nests a variable quantifier inside an unbounded one"),
        ("x*", "pattern: The pattern can match an empty string"),
        ("", "pattern: A regex rule needs a pattern."),
    ],
)
def test_a_bad_regex_gets_a_clear_message(admin_client, pattern, message):
    response = tried(admin_client, "TICKET-1", pattern=pattern)

    assert response.status_code == 400
    assert any(text.startswith(message) for text in response.json()["errors"]), response.json()


def test_the_whole_rule_set_runs_with_this_rule_as_typed(admin_client, no_rules):
    RedactionRule.objects.create(name="emails", detector="email", replacement="[EMAIL]", position=1)
    RedactionRule.objects.create(
        name="off", detector="regex", pattern="secret", enabled=False, position=2
    )
    rule = RedactionRule.objects.create(
        name="tickets", detector="regex", pattern="TICKET-[0-9]+", position=3
    )
    sample = "TICKET-1 ORDER-2 a@example.com secret"

    alone = tried(admin_client, sample, rule=rule, pattern="ORDER-[0-9]+", replacement="[O]")
    every = tried(
        admin_client,
        sample,
        rule=rule,
        within="all",
        pattern="ORDER-[0-9]+",
        replacement="[O]",
        position="3",
    )

    assert alone.json()["audit"] == "TICKET-1 [O] a@example.com secret"
    # The saved e-mail rule too, not the disabled one, and not the rule's saved version.
    assert every.json()["audit"] == "TICKET-1 [O] [EMAIL] secret"
    assert every.json()["rules"] == ["emails", "tickets"]


def test_a_new_rule_joins_the_set_at_its_position(admin_client, no_rules):
    RedactionRule.objects.create(
        name="digits", detector="regex", pattern="[0-9]+", replacement="#", position=5
    )

    before = tried(admin_client, "TICKET-12", within="all", position="1", name="new")
    after = tried(admin_client, "TICKET-12", within="all", position="9", name="new")

    assert before.json() == {
        "audit": "[TICKET]",
        "upstream": "TICKET-12",
        "rules": ["new", "digits"],
    }
    assert after.json()["audit"] == "TICKET-#" and after.json()["rules"] == ["digits", "new"]


def test_a_disabled_rule_is_tried_alone_but_left_out_of_the_set(admin_client, no_rules):
    alone = tried(admin_client, "TICKET-1", enabled=None)
    every = tried(admin_client, "TICKET-1", enabled=None, within="all")

    assert alone.json()["audit"] == "[TICKET]"
    assert every.json() == {"audit": "TICKET-1", "upstream": "TICKET-1", "rules": []}


def test_an_empty_or_huge_sample_or_a_get_is_refused(admin_client):
    assert tried(admin_client, "").json()["errors"] == ["Type a sample text to try the rule on."]
    assert tried(admin_client, "x" * 20_001).status_code == 400
    assert admin_client.get(TRY).status_code == 405
    assert tried(admin_client, "x", rule=None, _try_rule="abc").status_code == 400


def test_staff_without_the_rules_permission_may_not_try(db):
    finance = session(make_staff("fred", groups=("Finance",)))
    ops = session(make_staff("olga", groups=("Ops",)))

    assert tried(finance, "TICKET-1").status_code == 403
    assert tried(ops, "TICKET-1").json()["audit"] == "[TICKET]"


def test_the_test_page_tries_a_saved_rule_even_when_disabled(admin_client):
    rule = RedactionRule.objects.create(
        name="tickets", detector="regex", pattern="TICKET-[0-9]+", replacement="[T]", enabled=False
    )

    response = admin_client.post(
        reverse("admin:audit_redactionrule_test", args=[rule.pk]), {"sample": "see TICKET-9"}
    )

    assert response.context["result"] == "see [T]"
