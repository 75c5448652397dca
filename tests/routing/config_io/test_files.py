"""routing/config_io/files.py: YAML text in and out, and the example files (shared/ and docs/)
imported, re-imported and round-tripped."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from audit.models import RedactionRule
from billing.models import Budget, RateLimit, Scope
from gateway_project.lib.upsert import Change
from providers.models import Provider, ProviderModel
from routing.config_io import (
    ConfigError,
    config_dump,
    config_export,
    config_import,
    config_load,
    config_load_file,
)
from routing.models import Route
from tenants.models import Tenant
from tests.routing.config_io.support import DOCS_EXAMPLE, SHARED_EXAMPLE, empty_database, load

pytestmark = pytest.mark.django_db


def test_yaml_problems_name_the_line() -> None:
    with pytest.raises(ConfigError, match=r"line 4.*duplicate key 'kind'"):
        config_load("providers:\n  - name: a\n    kind: stub\n    kind: openai\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        config_load("providers: [\n")


def test_it_imports_the_shared_example(shared_example: dict) -> None:
    # The default rules of a fresh install (audit migration 0003), if this test database
    # still has them: an import without prune keeps them.
    rules_before = set(RedactionRule.objects.values_list("name", flat=True))
    report = config_import(data=shared_example)

    assert report.total(Change.CREATED) > 0
    assert set(Provider.objects.values_list("name", flat=True)) == {"openai", "anthropic", "local"}
    mini = ProviderModel.objects.get(provider__name="openai", name="gpt-4o-mini")
    assert mini.input_per_million == Decimal("0.15")
    assert mini.output_per_million == Decimal("0.60")
    assert mini.context_window == 128000
    assert Provider.objects.get(name="openai").timeout_s == Decimal(60)
    assert Tenant.objects.get(slug="globex").status == Tenant.Status.SUSPENDED

    route = Route.objects.get(name="support_copilot")
    assert route.tenant.slug == "acme"
    assert [t.provider_model.name for t in route.targets.order_by("position")] == [
        "gpt-4o-mini",
        "claude-haiku-4-5",
    ]
    assert Route.objects.get(name="echo").tenant is None
    assert RateLimit.objects.get(scope=Scope.ROUTE, route=route).rpm == 100
    acme_budget = Budget.objects.get(scope=Scope.TENANT, tenant__slug="acme")
    assert acme_budget.max_cost_usd == Decimal("500.00")
    assert acme_budget.period == "monthly"

    imported = ["e-mail", "card", "ticket"]
    assert set(RedactionRule.objects.values_list("name", flat=True)) == rules_before | set(imported)
    rules = list(RedactionRule.objects.filter(name__in=imported).order_by("position"))
    assert [r.name for r in rules] == imported
    assert rules[2].detector == "regex"
    assert rules[2].pattern == "TCK-[0-9]{6}"
    assert rules[1].scope == "audit_and_upstream"


def test_importing_the_same_file_twice_changes_nothing(
    shared_example: dict, writes: list[str]
) -> None:
    config_import(data=shared_example)
    writes.clear()

    report = config_import(data=shared_example)

    assert report.total(Change.CREATED) == 0
    assert report.total(Change.UPDATED) == 0
    assert report.total(Change.DELETED) == 0
    assert not report.changed
    assert writes == []  # no save at all, so the proxy snapshot is not invalidated


def test_the_documented_example_imports_and_is_idempotent() -> None:
    data = config_load_file(DOCS_EXAMPLE)
    config_import(data=data)
    assert not config_import(data=data).changed
    assert RateLimit.objects.filter(scope=Scope.GLOBAL).get().rpm == 6000
    assert RateLimit.objects.get(scope=Scope.TENANT, model_name="support_copilot").rpm == 100
    assert not Provider.objects.get(name="azure").enabled


def test_the_documented_example_shows_resilience_caching_and_hedging() -> None:
    config_import(data=config_load_file(DOCS_EXAMPLE))

    openai = Provider.objects.get(name="openai")
    assert openai.stream_idle_timeout_s == Decimal("2.5")
    assert openai.circuit_failure_threshold == 3
    route = Route.objects.get(name="support_copilot")
    assert route.semantic_cache
    assert route.semantic_threshold == Decimal("0.92")
    assert route.hedge_after_ms == 1500


@pytest.mark.parametrize("example", [SHARED_EXAMPLE, DOCS_EXAMPLE], ids=["shared", "docs"])
def test_export_then_import_into_an_empty_database_round_trips(example: Path) -> None:
    if not example.exists():
        pytest.skip(f"{example} is not there")
    config_import(data=config_load_file(example))
    first = config_dump(config_export())

    empty_database()
    config_import(data=load(first))
    second = config_dump(config_export())

    assert second == first
    assert not config_import(data=load(first)).changed
