"""routing/config_io/importer.py: upserts, dry runs, references to rows in the database,
all-or-nothing writes, pruning, and the settings of existing keys."""

from __future__ import annotations

import pytest

from audit.models import RedactionRule
from billing.models import Budget, RateLimit, Scope
from gateway_project.lib.upsert import Change
from providers.models import Provider, ProviderModel
from routing.config_io import ConfigError, config_import
from routing.models import Route
from tenants.models import ApiKey, Tenant
from tests import factories
from tests.routing.config_io.support import EVERYTHING, MINIMAL, configure_keys, load

pytestmark = pytest.mark.django_db


def test_a_dry_run_reports_but_writes_nothing() -> None:
    report = config_import(data=load(MINIMAL), dry_run=True)

    assert report.dry_run
    assert report.counts["providers"][Change.CREATED] == 1
    assert report.counts["routes"][Change.CREATED] == 1
    assert "Dry run" in report.summary()
    assert not Provider.objects.exists()
    assert not Route.objects.exists()


def test_targets_are_replaced_in_file_order() -> None:
    config_import(data=load(MINIMAL))
    changed = load(MINIMAL)
    changed["routes"][0]["targets"] = [
        {"provider": "local", "model": "echo2", "weight": 2},
        {"provider": "local", "model": "echo"},
    ]

    report = config_import(data=changed)

    assert report.counts["routes"][Change.UPDATED] == 1
    targets = Route.objects.get(name="echo").targets.order_by("position")
    assert [(t.provider_model.name, t.weight) for t in targets] == [("echo2", 2), ("echo", 1)]


def test_a_tenant_in_the_file_updates_the_existing_row_and_keeps_its_keys(
    acme: Tenant, writes: list[str]
) -> None:
    issued = factories.make_key(acme)
    writes.clear()
    data = load("tenants: [{slug: acme, name: Acme Corp, status: suspended}]")

    report = config_import(data=data)

    assert report.counts["tenants"][Change.UPDATED] == 1
    assert writes == ["Tenant"]
    tenant = Tenant.objects.get()
    assert (tenant.pk, tenant.name, tenant.status) == (acme.pk, "Acme Corp", "suspended")
    assert list(tenant.api_keys.all()) == [issued.api_key]
    assert config_import(data=data).counts["tenants"][Change.UNCHANGED] == 1


def test_routes_may_use_models_that_are_already_in_the_database(acme: Tenant) -> None:
    provider = factories.make_provider("vendor")
    factories.make_model(provider, "big")
    data = load("routes: [{name: r, tenant: acme, targets: [{provider: vendor, model: big}]}]")

    config_import(data=data)

    assert Route.objects.get(name="r", tenant=acme).targets.get().provider_model.name == "big"


def test_unknown_references_are_reported_with_their_path() -> None:
    data = load(MINIMAL)
    data["routes"].append(
        {
            "name": "r",
            "tenant": "ghost",
            "targets": [
                {"provider": "local", "model": "echo"},
                {"provider": "local", "model": "missing"},
                {"provider": "nobody", "model": "m"},
            ],
        }
    )
    with pytest.raises(ConfigError) as caught:
        config_import(data=data)

    message = str(caught.value)
    assert "routes[1].tenant: no tenant 'ghost'" in message
    assert "routes[1].targets[1]: provider 'local' has no model 'missing'" in message
    assert "routes[1].targets[2]: no provider 'nobody'" in message
    assert not Provider.objects.exists()


def test_a_database_validation_error_rolls_back_earlier_writes() -> None:
    data = load(MINIMAL)
    data["providers"].append({"name": "bad", "kind": "openai", "base_url": "not a url"})

    with pytest.raises(ConfigError, match=r"providers\[1\]: base_url"):
        config_import(data=data)

    assert not Provider.objects.exists()  # providers[0] was saved, then rolled back


def test_allowed_routes_must_be_routes_the_tenant_can_see(globex: Tenant) -> None:
    echo = factories.make_model(factories.make_provider())
    factories.make_route("globex-only", echo, tenant=globex)
    data = load(MINIMAL)
    data["tenants"] = [{"slug": "acme", "allowed_routes": ["echo", "globex-only", "nope"]}]

    with pytest.raises(ConfigError) as caught:
        config_import(data=data)

    assert (
        "tenants[0].allowed_routes: no route named globex-only, nope for tenant 'acme' "
        "(global or its own) in this file or the database"
    ) in str(caught.value)
    assert not Tenant.objects.filter(slug="acme").exists()


def test_allowed_routes_may_name_routes_already_in_the_database(acme: Tenant) -> None:
    echo = factories.make_model(factories.make_provider("vendor"), "big")
    factories.make_route("acme-db", echo, tenant=acme)
    factories.make_route("global-db", echo)
    data = load("tenants: [{slug: acme, allowed_routes: [acme-db, global-db]}]")

    config_import(data=data)
    acme.refresh_from_db()
    assert acme.allowed_routes == ["acme-db", "global-db"]

    # A new tenant sees only the global one.
    data = load("tenants: [{slug: initech, allowed_routes: [global-db, acme-db]}]")
    with pytest.raises(ConfigError, match="no route named acme-db for tenant 'initech'"):
        config_import(data=data)

    # With --prune the routes the file leaves out are deleted, so they do not count.
    data = load(MINIMAL)
    data["tenants"] = [{"slug": "acme", "allowed_routes": ["echo", "acme-db"]}]
    with pytest.raises(ConfigError, match="no route named acme-db for tenant 'acme'"):
        config_import(data=data, prune=True)


EXTRA = """
routes:
  - name: extra
    targets: [{provider: local, model: echo}]
    budgets: [{period: daily, max_tokens: 10}]
tenants:
  - slug: acme
    name: Acme
    rate_limits: {rpm: 5}
redaction_rules:
  - {name: ip, detector: ipv4}
"""


def test_without_prune_rows_missing_from_the_file_are_kept() -> None:
    config_import(data=load(MINIMAL))
    config_import(data=load(EXTRA))

    report = config_import(data=load(MINIMAL))

    assert report.total(Change.DELETED) == 0
    assert Route.objects.filter(name="extra").exists()
    assert RedactionRule.objects.filter(name="ip").exists()


def test_prune_deletes_routes_rules_and_limits_not_in_the_file() -> None:
    # The default rules of a fresh install (audit migration 0003), when this test database
    # still has them, are not in the file either: the file is the whole truth.
    default_rules = RedactionRule.objects.count()
    config_import(data=load(MINIMAL))
    config_import(data=load(EXTRA))
    data = load(MINIMAL)
    data["tenants"] = [{"slug": "acme", "name": "Acme"}]  # no rate_limits any more

    report = config_import(data=data, prune=True)

    assert report.counts["routes"][Change.DELETED] == 1
    assert report.counts["redaction_rules"][Change.DELETED] == 1 + default_rules
    assert report.counts["rate_limits"][Change.DELETED] == 1
    assert list(Route.objects.values_list("name", flat=True)) == ["echo"]
    assert list(RedactionRule.objects.values_list("name", flat=True)) == ["e-mail"]
    assert not RateLimit.objects.exists()
    assert not Budget.objects.exists()  # went with the pruned route
    assert Tenant.objects.filter(slug="acme").exists()  # tenants are never pruned
    assert ProviderModel.objects.filter(name="echo2").exists()  # nor models
    assert not config_import(data=data, prune=True).changed


def test_importing_limits_for_a_key_the_database_does_not_have_is_an_error(acme) -> None:
    document = load(EVERYTHING)
    document["tenants"][0]["keys"] = [{"prefix": "gwk_NoSuchKy", "rate_limits": {"rpm": 5}}]
    with pytest.raises(ConfigError) as caught:
        config_import(data=document)
    assert "tenants[0].keys[0].prefix" in str(caught.value)
    assert "gwk_NoSuchKy" in str(caught.value)
    assert not RateLimit.objects.exists()


def test_a_key_of_another_tenant_cannot_be_configured_through_this_one(acme, globex) -> None:
    other = factories.make_key(globex).api_key
    document = load(EVERYTHING)
    document["tenants"][0]["keys"] = [{"prefix": other.prefix, "rate_limits": {"rpm": 5}}]
    with pytest.raises(ConfigError) as caught:
        config_import(data=document)
    assert f"key {other.prefix} belongs to another tenant" in str(caught.value)
    assert not RateLimit.objects.filter(scope=Scope.KEY).exists()


def test_prune_clears_the_settings_of_keys_a_listed_tenant_does_not_list() -> None:
    config_import(data=load(EVERYTHING))
    configure_keys()
    config_import(data=load(EVERYTHING), prune=True)  # lists acme, but none of its keys

    limited = ApiKey.objects.get(name="billing service")
    assert not RateLimit.objects.filter(api_key=limited).exists()
    assert not Budget.objects.filter(api_key=limited).exists()
    assert limited.allowed_routes == [] and limited.max_n is None
