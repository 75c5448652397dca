"""A configuration version per committed change: one per transaction, none for a change
that changes nothing, the whole configuration in it (never a secret), and the routing hash
audit rows carry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from django.db import transaction
from django.utils import timezone

from audit.models import RedactionRule
from audit.services import redaction_rule_create, redaction_rule_update
from billing.services import (
    BudgetSpec,
    RateLimitSpec,
    Subject,
    budgets_replace,
    price_version_create,
    rate_limits_replace,
)
from providers.models import Provider, ProviderModel
from providers.services import provider_model_update, provider_update
from routing.config_io import config_dump, config_export, config_import, config_load
from routing.models import ConfigVersion, Route
from routing.services import TargetSpec, route_targets_replace, route_update
from routing.snapshot import build_snapshot
from routing.versions.selectors import config_version_before, config_version_latest
from routing.versions.services import config_version_record
from tenants.models import ApiKey, Tenant
from tenants.services import (
    api_key_configure,
    api_key_issue,
    api_key_revoke,
    tenant_set_status,
    tenant_update,
)
from tests import factories
from tests.routing.versions.support import doc

pytestmark = pytest.mark.django_db


@dataclass
class Config:
    provider: Provider
    echo: ProviderModel
    echo2: ProviderModel
    route: Route
    tenant: Tenant
    key: ApiKey
    plaintext: str


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("VERSIONS_TEST_UPSTREAM_KEY", "sk-upstream-secret-123456")
    provider = factories.make_provider("local", api_key_env="VERSIONS_TEST_UPSTREAM_KEY")
    echo = factories.make_model(provider, "echo")
    echo2 = factories.make_model(provider, "echo2")
    tenant = factories.make_tenant("acme")
    issued = factories.make_key(tenant)
    return Config(
        provider=provider,
        echo=echo,
        echo2=echo2,
        route=factories.make_route("chat", echo),
        tenant=tenant,
        key=issued.api_key,
        plaintext=issued.plaintext,
    )


def _rule(c: Config) -> None:
    redaction_rule_create(name="ticket", detector="regex", pattern=r"TCK-\d+", replacement="[T]")


# One change of each kind of configuration, and what its version's summary says.
CHANGES: dict[str, tuple[Callable[[Config], object], str]] = {
    "provider": (
        lambda c: provider_update(provider=c.provider, timeout_s=Decimal(30)),
        "provider local: timeout_s changed",
    ),
    "model price": (
        lambda c: provider_model_update(provider_model=c.echo, input_per_million=Decimal("3")),
        "provider local: models changed",
    ),
    "price version now": (
        lambda c: price_version_create(
            provider_model=c.echo2, input_per_million=5, output_per_million=7
        ),
        "provider local: models changed",
    ),
    "price version later": (
        lambda c: price_version_create(
            provider_model=c.echo,
            input_per_million=9,
            output_per_million=9,
            effective_from=timezone.now() + timedelta(days=3),
        ),
        "price version",  # not in the document (prices in force now): the row written
    ),
    "route": (
        lambda c: route_update(route=c.route, strategy=Route.Strategy.ROUND_ROBIN),
        "route chat (global): strategy changed",
    ),
    "route targets": (
        lambda c: route_targets_replace(
            route=c.route, targets=[TargetSpec(c.echo2), TargetSpec(c.echo)]
        ),
        "route chat (global): targets changed",
    ),
    "rate limit": (
        lambda c: rate_limits_replace(
            subject=Subject.of(c.tenant), rate_limits=[RateLimitSpec(rpm=10)]
        ),
        "tenant acme: rate_limits changed",
    ),
    "budget": (
        lambda c: budgets_replace(
            subject=Subject.of(c.route), budgets=[BudgetSpec(max_cost_usd=Decimal(5))]
        ),
        "route chat (global): budgets changed",
    ),
    "redaction rule added": (_rule, "redaction rule ticket added"),
    "redaction rule changed": (
        lambda c: redaction_rule_update(
            rule=RedactionRule.objects.get(name="E-mail addresses"), replacement="[MAIL]"
        ),
        "redaction rule E-mail addresses: replacement changed",
    ),
    "tenant policy": (
        lambda c: tenant_update(tenant=c.tenant, max_output_tokens=500),
        "tenant acme: policy changed",
    ),
    "tenant status": (
        lambda c: tenant_set_status(tenant=c.tenant, status=Tenant.Status.SUSPENDED),
        "tenant acme: status changed",
    ),
    "key policy": (
        lambda c: api_key_configure(api_key=c.key, max_n=2),
        "tenant acme: keys changed",
    ),
    "key revoked": (lambda c: api_key_revoke(api_key=c.key), "(now revoked)"),
    "key issued": (lambda c: api_key_issue(tenant=c.tenant, name="ci"), "(ci) added"),
}
# Changes the document cannot show: a key without settings, a price not yet in force.
UNSEEN = {"price version later", "key revoked", "key issued"}


@pytest.mark.parametrize("kind", CHANGES)
def test_each_kind_of_change_records_one_version(config: Config, committed, kind: str):
    change, said = CHANGES[kind]
    with committed() as new:
        change(config)
    [version] = new
    before = config_version_before(version=version)
    assert said in version.summary
    assert version.actor == "system" and version.user_id is None
    assert version.changes  # the rows written, one line each
    assert doc(version) == config_dump(config_export())
    # The content a rollback imports is the data of the YAML shown.
    assert config_load(doc(version)) == orjson.loads(version.content)
    if kind in UNSEEN:  # recorded all the same, with the document as it stands
        assert doc(version) == doc(before)
    else:
        assert doc(version) != doc(before)


def test_a_transaction_of_many_rows_is_one_version(config: Config, committed):
    with committed() as new, transaction.atomic():
        route_update(route=config.route, description="one")
        route_targets_replace(route=config.route, targets=[TargetSpec(config.echo2)])
        tenant_update(tenant=config.tenant, name="Acme Corp")
        rate_limits_replace(subject=Subject.of(None), rate_limits=[RateLimitSpec(rpm=100)])
    [version] = new
    assert "route chat (global): description, targets changed" in version.summary
    assert "tenant acme: name changed" in version.summary
    assert "global rate limits changed" in version.summary
    assert len(version.changes) >= 4  # route, the target changed, tenant, limit


def test_separate_transactions_are_separate_versions(config: Config, committed):
    with committed() as first:
        route_update(route=config.route, description="one")
    with committed() as second:
        route_update(route=config.route, description="two")
    assert len(first) == len(second) == 1
    assert second[0].pk > first[0].pk


def test_an_import_is_one_version_and_importing_it_again_none(config: Config, committed):
    document = config_load(config_dump(config_export()))
    document["routes"].append(
        {"name": "fast", "targets": [{"provider": "local", "model": "echo2"}]}
    )
    document["routes"].append({"name": "slow", "targets": [{"provider": "local", "model": "echo"}]})
    with committed() as new:
        config_import(data=document)
    [version] = new
    assert "route fast (global) added; route slow (global) added" in version.summary
    with committed() as again:
        config_import(data=document)
    assert again == []


def test_a_save_that_changes_nothing_records_no_version(config: Config, committed):
    with committed() as new:
        config.route.save()  # post_save fires, the configuration is the same
        Tenant.objects.get(pk=config.tenant.pk).save()
    assert new == []


def test_a_rolled_back_transaction_records_nothing(config: Config, committed):
    with committed() as new, pytest.raises(RuntimeError), transaction.atomic():
        route_update(route=config.route, description="rolled back")
        raise RuntimeError
    assert new == []
    assert "rolled back" not in doc(config_version_latest())


def test_a_change_and_its_undo_in_one_transaction_record_nothing(config: Config, committed):
    with committed() as new, transaction.atomic():
        route_update(route=config.route, description="for a moment")
        route_update(route=config.route, description="")
    assert new == []


def test_no_secret_and_no_key_hash_is_ever_in_a_version(config: Config, committed):
    with committed():
        api_key_configure(api_key=config.key, max_n=3)  # the key is listed in the document
    documents = "\n".join(
        [*ConfigVersion.objects.values_list("content", flat=True)]
        + [doc(version) for version in ConfigVersion.objects.all()]
    )
    changes = str(list(ConfigVersion.objects.values_list("changes", "summary")))
    assert config.key.prefix in documents
    for secret in (config.key.key_hash, config.plaintext, "sk-upstream-secret-123456"):
        assert secret not in documents and secret not in changes
    assert "VERSIONS_TEST_UPSTREAM_KEY" in documents  # the variable's name, never its value


def test_the_routing_hash_is_the_one_the_proxy_stamps_on_audit_rows(config: Config, committed):
    with committed() as new:
        route_update(route=config.route, strategy=Route.Strategy.COST)
    assert new[0].routing_version == build_snapshot().version
    with committed() as budget_only:
        budgets_replace(subject=Subject.of(config.tenant), budgets=[BudgetSpec(max_tokens=1_000)])
    # A budget does not change how a request is routed or redacted: the same hash.
    assert budget_only[0].routing_version == new[0].routing_version == build_snapshot().version
    with committed() as rule:
        _rule(config)
    assert rule[0].routing_version == build_snapshot().version != new[0].routing_version


def test_recording_compares_with_the_latest_version(config: Config, committed):
    with committed():
        route_update(route=config.route, description="x")
    assert config_version_record() is None  # nothing new since
    assert config_version_record(labels={"tenants.ApiKey"}) is not None  # unseen: kept


def test_a_failing_recorder_never_fails_the_write_nor_its_announcement(
    config: Config, committed, monkeypatch: pytest.MonkeyPatch
):
    import routing.signals
    import routing.versions.services

    bumps: list[bool] = []
    monkeypatch.setattr(routing.signals.generation, "bump", lambda: bumps.append(True))

    def broken() -> dict:
        raise RuntimeError("export failed")

    monkeypatch.setattr(routing.versions.services, "config_export", broken)
    with committed() as new:
        bumps.clear()  # the fixture's own changes were announced as the block began
        route_update(route=config.route, description="still saved")
    assert new == [] and bumps == [True]  # one announcement for the transaction
    assert Route.objects.get(pk=config.route.pk).description == "still saved"


def test_a_change_made_outside_the_services_is_recorded_after_migrate(config: Config, committed):
    from routing.apps import _record_baseline

    with committed():
        route_update(route=config.route, description="through the services")
    latest = config_version_latest()
    Route.objects.filter(pk=config.route.pk).update(description="by hand")  # no signal
    _record_baseline()
    baseline = config_version_latest()
    assert baseline.pk > latest.pk
    assert baseline.actor == "system"
    assert baseline.summary == (
        "changed outside the services (found after migrate): "
        "route chat (global): description changed"
    )
    _record_baseline()
    assert config_version_latest() == baseline  # nothing new since
