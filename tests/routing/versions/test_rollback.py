"""Rolling back to a version from the admin: a confirmation step, then an import of the
version's document with prune, recorded as a version of its own; the live configuration's
export is the version's document again, and the proxy routes by it.

Committed for real (a transactional database): the rollback's own version is recorded
when its transaction commits, and the proxy reads committed rows from another thread.
"""

from __future__ import annotations

import re
from decimal import Decimal

import orjson
import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent, RedactionRule
from audit.services import redaction_rule_create, redaction_rule_delete
from audit.writer import audit_writer
from billing.services import BudgetSpec, Subject, budgets_replace
from providers.services import provider_create
from routing.config_io import config_dump, config_export
from routing.models import ConfigVersion, Route
from routing.services import TargetSpec, route_targets_replace, route_update
from routing.versions.selectors import config_version_latest
from tenants.services import api_key_configure, api_key_delete
from tests import factories
from tests.billing.finance_data import groups_as_migrated
from tests.gateway_project.management_api import make_staff, session
from tests.personas import Personas
from tests.routing.versions.support import doc

pytestmark = pytest.mark.django_db(transaction=True)


def rollback_url(version: ConfigVersion) -> str:
    return reverse("admin:routing_configversion_rollback", args=[version.pk])


def live() -> str:
    return config_dump(config_export())


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def ops() -> Client:
    groups_as_migrated()
    return session(make_staff("olga", groups=("Ops",)))


@pytest.fixture
def echo2(personas: Personas):
    return factories.make_model(personas.provider, "echo2")


def change_everything(personas: Personas, echo2) -> None:
    route_targets_replace(route=personas.route, targets=[TargetSpec(echo2)])
    route_update(route=personas.acme.route, strategy=Route.Strategy.COST)
    redaction_rule_delete(rule=RedactionRule.objects.get(name="ticket"))
    budgets_replace(
        subject=Subject.of(personas.acme.tenant), budgets=[BudgetSpec(max_cost_usd=Decimal(9))]
    )
    api_key_configure(api_key=personas.acme.key, max_n=1)


def test_a_rollback_restores_the_exact_earlier_export(ops: Client, personas, echo2):
    redaction_rule_create(name="ticket", detector="regex", pattern=r"TCK-\d+")
    target = config_version_latest()
    assert doc(target) == live()
    change_everything(personas, echo2)
    assert live() != doc(target)

    confirm = ops.get(rollback_url(target))
    html = confirm.content.decode()
    assert confirm.status_code == 200
    assert 'id="rollback-confirm"' in html and 'id="rollback-cancel"' in html
    assert "routes: 2 updated" in html  # the dry run's report
    assert re.search(r'class="diff-remove">.*?model: echo2', html, re.S)
    assert live() != doc(target)  # looking changed nothing

    done = ops.post(rollback_url(target))
    recorded = config_version_latest()
    assert done.status_code == 302
    assert done["Location"] == reverse("admin:routing_configversion_change", args=[recorded.pk])
    assert messages_of(done) == [
        f"Rolled back to version {target.pk}, recorded as version {recorded.pk}."
    ]
    assert live() == doc(target) == doc(recorded)
    assert recorded.rollback_of_id == target.pk
    assert recorded.actor == "olga (admin)"
    assert recorded.summary.startswith(f"rollback to version {target.pk}: ")


def test_a_request_after_a_rollback_takes_the_rolled_back_route(ops: Client, personas, echo2):
    def call() -> tuple[str, str]:
        response = Client().post(
            "/v1/chat/completions",
            orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
            content_type="application/json",
            headers={"authorization": f"Bearer {personas.acme.plaintext_key}"},
        )
        assert response.status_code == 200, response.content
        return response["x-gateway-model"], response["x-gateway-config-version"]

    target = config_version_latest()
    route_targets_replace(route=personas.route, targets=[TargetSpec(echo2)])
    assert call()[0] == "echo2"

    ops.post(rollback_url(target))
    model, served_under = call()
    assert model == "echo"
    rollback = config_version_latest()
    assert served_under == rollback.routing_version

    # Its audit row links to the rollback's version.
    audit_writer.flush()
    row = AuditEvent.objects.order_by("-created_at").first()
    html = ops.get(reverse("admin:audit_auditevent_change", args=[row.pk])).content.decode()
    [href] = re.findall(r'id="audit-config-version" href="([^"]+)"', html)
    followed = ops.get(href.replace("&amp;", "&"))
    assert followed["Location"] == reverse("admin:routing_configversion_change", args=[rollback.pk])


def test_a_version_that_no_longer_applies_is_refused_with_the_reason(ops: Client, personas):
    api_key_configure(api_key=personas.acme.key, max_n=2)  # the document names the key
    target = config_version_latest()
    prefix = personas.acme.key.prefix
    api_key_delete(api_key=personas.acme.key)
    before = config_version_latest()

    for response in (ops.get(rollback_url(target)), ops.post(rollback_url(target))):
        html = response.content.decode()
        assert response.status_code == 409
        assert 'id="rollback-errors"' in html and 'id="rollback-confirm"' not in html
        assert f"no API key {prefix} in the database" in html
    assert config_version_latest() == before  # nothing written


def test_a_rollback_says_what_it_cannot_restore(ops: Client, personas):
    target = config_version_latest()
    provider_create(name="added-since", kind="stub")
    confirm = ops.get(rollback_url(target)).content.decode()
    assert 'id="rollback-not-restored"' in confirm and "provider added-since added" in confirm
    done = ops.post(rollback_url(target))
    assert any("provider added-since added" in message for message in messages_of(done))


def test_rolling_back_to_what_is_live_changes_nothing(ops: Client, personas):
    latest = config_version_latest()
    done = ops.post(rollback_url(latest))
    assert messages_of(done) == [f"Nothing to change: the configuration is version {latest.pk}'s."]
    assert config_version_latest() == latest


def test_finance_may_not_roll_back(personas):
    groups_as_migrated()
    finance = session(make_staff("fred", groups=("Finance",)))
    target = config_version_latest()
    route_update(route=personas.route, description="changed")
    assert finance.post(rollback_url(target)).status_code == 403
    assert "changed" in live()
