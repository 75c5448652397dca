"""Configuration as code: import, export, validation, idempotency and pruning."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models.signals import post_delete, post_save

from audit.models import RedactionRule
from billing.models import Budget, RateLimit, Scope
from billing.services import (
    BudgetSpec,
    RateLimitSpec,
    Subject,
    budgets_replace,
    rate_limits_replace,
)
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
from routing.models import Route, RouteTarget
from routing.services import route_upsert
from tenants.models import ApiKey, Tenant, UsagePolicy
from tenants.services import api_key_revoke
from tests import factories

SHARED_EXAMPLE = Path(settings.BASE_DIR).parent / "shared" / "gateway.example.yaml"
DOCS_EXAMPLE = Path(settings.BASE_DIR) / "docs" / "gateway.example.yaml"

pytestmark = pytest.mark.django_db


@pytest.fixture
def shared_example() -> dict:
    if not SHARED_EXAMPLE.exists():
        pytest.skip(f"{SHARED_EXAMPLE} is not there")
    return config_load_file(SHARED_EXAMPLE)


@pytest.fixture
def writes() -> Iterator[list[str]]:
    """Every row saved or deleted while the test runs."""
    seen: list[str] = []

    def record(sender: type, **kwargs: object) -> None:
        seen.append(sender.__name__)

    post_save.connect(record, weak=False, dispatch_uid="test-writes-save")
    post_delete.connect(record, weak=False, dispatch_uid="test-writes-delete")
    yield seen
    post_save.disconnect(dispatch_uid="test-writes-save")
    post_delete.disconnect(dispatch_uid="test-writes-delete")


def load(text: str) -> dict:
    return config_load(text)


MINIMAL = """
providers:
  - name: local
    kind: stub
    models:
      - {name: echo, input_per_million: "0", output_per_million: "0"}
      - {name: echo2, input_per_million: "0", output_per_million: "0"}
routes:
  - name: echo
    targets:
      - {provider: local, model: echo}
redaction_rules:
  - {name: e-mail, detector: email, replacement: "[EMAIL]", scope: audit}
"""


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


def _empty_database() -> None:
    Route.objects.all().delete()
    Tenant.objects.all().delete()
    Provider.objects.all().delete()
    RedactionRule.objects.all().delete()
    RateLimit.objects.all().delete()


@pytest.mark.parametrize("example", [SHARED_EXAMPLE, DOCS_EXAMPLE], ids=["shared", "docs"])
def test_export_then_import_into_an_empty_database_round_trips(example: Path) -> None:
    if not example.exists():
        pytest.skip(f"{example} is not there")
    config_import(data=config_load_file(example))
    first = config_dump(config_export())

    _empty_database()
    config_import(data=load(first))
    second = config_dump(config_export())

    assert second == first
    assert not config_import(data=load(first)).changed


def test_export_writes_prices_as_decimal_strings_and_no_keys(acme: Tenant) -> None:
    issued = factories.make_key(acme)
    config_import(data=load(MINIMAL))

    text = config_dump(config_export())

    assert "input_per_million: '0.00'" in text
    assert issued.api_key.prefix not in text
    assert "gwk_" not in text


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


def test_validation_errors_name_every_problem_and_write_nothing() -> None:
    text = """
providers:
  - name: openai
    kind: openai
    api_key: abc
    models:
      - {name: m, input_per_million: 0.15, output_per_million: "x"}
  - {name: other, kind: nope}
tenants:
  - {slug: acme, status: sleeping, budgets: [{period: daily}]}
routes:
  - name: r
    tenant: ghost
    strategy: fastest
    targets:
      - {provider: openai, model: m}
      - {provider: openai, model: missing}
      - {provider: nobody, model: m, wieght: 2}
redaction_rules:
  - {name: a, detector: email, pattern: "x+"}
  - {name: b, pattern: "(a+)+"}
  - {name: b, detector: regex}
"""
    with pytest.raises(ConfigError) as caught:
        config_import(data=load(text), source="gateway.yaml")

    message = str(caught.value)
    assert message.startswith("gateway.yaml: ")
    for expected in [
        "providers[0].api_key: looks like a secret",
        "providers[0].models[0].input_per_million: write amounts as quoted decimal strings",
        "providers[0].models[0].output_per_million: 'x' is not a decimal number",
        "providers[1].kind: 'nope' is not one of",
        "tenants[0].status: 'sleeping' is not one of",
        "tenants[0].budgets[0]: set max_tokens, max_cost_usd or both",
        "routes[0].strategy: 'fastest' is not one of",
        "routes[0].targets[2].wieght: unknown field",
        "redaction_rules[0].pattern: a pattern only goes with the regex detector",
        "redaction_rules[1].pattern: The pattern nests",
        "redaction_rules[2].pattern: the regex detector needs a pattern",
        "redaction_rules[2]: duplicate redaction rule name",
    ]:
        assert expected in message
    assert not Provider.objects.exists()
    assert not Tenant.objects.exists()


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("providers: [{name: p, kind: openai, api_key_env: sk-abcdefghijklmnopqrstuvwxyz12}]",
         "providers[0].api_key_env: contains what looks like an API key"),
        ("providers: [{name: p, kind: openai, api_key_env: 'my key'}]",
         "must be the NAME of an environment variable"),
        ("tenants: [{slug: t, metadata: {note: 'AKIAIOSFODNN7EXAMPLE'}}]",
         "tenants[0].metadata.note: contains what looks like an API key"),
        ("providers: [{name: p, kind: stub, password: hunter2}]",
         "providers[0].password: looks like a secret"),
    ],
)  # fmt: skip
def test_secrets_are_refused(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_import(data=load(text))
    assert expected in str(caught.value)


def test_yaml_problems_name_the_line() -> None:
    with pytest.raises(ConfigError, match=r"line 4.*duplicate key 'kind'"):
        config_load("providers:\n  - name: a\n    kind: stub\n    kind: openai\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        config_load("providers: [\n")


def test_other_versions_and_shapes_are_refused() -> None:
    with pytest.raises(ConfigError, match="unsupported version 2"):
        config_import(data={"version": 2})
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_import(data=["providers"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="routes: expected a list"):
        config_import(data={"routes": {"name": "x"}})


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


# --- policies, allowed routes, output caps, alert thresholds ---

GOVERNED = """
providers:
  - name: local
    kind: stub
    models:
      - {name: echo, input_per_million: "0", output_per_million: "0"}
tenants:
  - slug: acme
    name: Acme
    allowed_routes: [mine, echo, mine]
    policy: {max_prompt_tokens: 8000, max_n: 1, max_depth: 16}
    rate_limits:
      - {rpm: 60}
      - {model: echo, tpm: 1000}
    budgets:
      - {period: monthly, max_cost_usd: "10", alert_thresholds: [90, 25]}
      - {period: daily, max_tokens: 500, alert_thresholds: [100, 80, 50]}
      - {period: weekly, max_tokens: 900, hard: false, alert_thresholds: []}
routes:
  - name: echo
    default_max_tokens: 256
    targets: [{provider: local, model: echo}]
  - name: mine
    tenant: acme
    targets: [{provider: local, model: echo}]
rate_limits:
  - {rpm: 6000}
  - {tpm: 5000000}
"""


def test_policies_allowed_routes_caps_and_thresholds_are_imported() -> None:
    config_import(data=load(GOVERNED))

    acme = Tenant.objects.get(slug="acme")
    assert acme.allowed_routes == ["mine", "echo"]  # repeats dropped, order kept
    assert (acme.max_prompt_tokens, acme.max_n, acme.max_depth) == (8000, 1, 16)
    assert acme.max_output_tokens is None
    assert Route.objects.get(name="echo").default_max_tokens == 256
    assert Route.objects.get(name="mine").default_max_tokens is None
    budgets = Budget.objects.filter(tenant=acme).order_by("id")
    assert [b.alert_thresholds for b in budgets] == [[25, 90], [50, 80, 100], []]
    assert RateLimit.objects.get(scope=Scope.TENANT, model_name="echo").tpm == 1000
    global_limits = RateLimit.objects.filter(scope=Scope.GLOBAL).order_by("id")
    assert [(r.rpm, r.tpm) for r in global_limits] == [(6000, None), (None, 5000000)]


def test_the_new_fields_round_trip_and_defaults_are_left_out() -> None:
    config_import(data=load(GOVERNED))
    first = config_dump(config_export())

    assert "allowed_routes: [mine, echo]" in first
    assert "max_prompt_tokens: 8000" in first
    assert "max_output_tokens" not in first  # no limit: not written
    assert "default_max_tokens: 256" in first
    assert "alert_thresholds: [25, 90]" in first
    assert "alert_thresholds: []" in first
    assert first.count("alert_thresholds") == 2  # the default [50, 80, 100] is left out

    _empty_database()
    config_import(data=load(first))
    assert config_dump(config_export()) == first


def test_importing_the_new_fields_twice_writes_nothing(writes: list[str]) -> None:
    config_import(data=load(GOVERNED))
    writes.clear()

    report = config_import(data=load(GOVERNED))

    assert not report.changed
    assert writes == []


def test_a_changed_policy_or_cap_alone_updates_its_row(writes: list[str]) -> None:
    config_import(data=load(GOVERNED))
    data = load(GOVERNED)
    data["tenants"][0]["policy"]["max_n"] = 2
    data["routes"][0]["default_max_tokens"] = 512
    writes.clear()

    report = config_import(data=data)

    assert report.counts["tenants"][Change.UPDATED] == 1
    assert report.counts["routes"][Change.UPDATED] == 1
    assert sorted(writes) == ["Route", "Tenant"]
    assert Tenant.objects.get().max_n == 2


def test_leaving_the_new_fields_out_means_their_defaults() -> None:
    config_import(data=load(GOVERNED))
    data = load(GOVERNED)
    del data["tenants"][0]["allowed_routes"]
    del data["tenants"][0]["policy"]
    del data["routes"][0]["default_max_tokens"]
    del data["tenants"][0]["budgets"][0]["alert_thresholds"]

    config_import(data=data)

    acme = Tenant.objects.get()
    assert acme.allowed_routes == []
    assert all(getattr(acme, name) is None for name in UsagePolicy.POLICY_FIELDS)
    assert Route.objects.get(name="echo").default_max_tokens is None
    assert Budget.objects.filter(tenant=acme).order_by("id")[0].alert_thresholds == [50, 80, 100]


def test_the_new_fields_are_validated() -> None:
    text = """
tenants:
  - slug: acme
    allowed_routes: chat
    policy: {max_n: 0, max_depth: 40000, max_messages: "10", max_body_bytes: true, max_cats: 5}
    budgets:
      - {max_tokens: 5, alert_thresholds: [0, 50]}
      - {max_tokens: 5, alert_thresholds: [101]}
      - {max_tokens: 5, alert_thresholds: 80}
      - {max_tokens: 5, alert_thresholds: [50.5]}
  - slug: globex
    allowed_routes: ["", 7]
routes:
  - name: r
    default_max_tokens: 0
    targets: [{provider: local, model: echo}]
"""
    with pytest.raises(ConfigError) as caught:
        config_import(data=load(text))

    message = str(caught.value)
    for expected in [
        "tenants[0].allowed_routes: expected a list of names, got a string",
        "tenants[0].policy.max_n: expected a whole number from 1 to 32767, got 0",
        "tenants[0].policy.max_depth: expected a whole number from 1 to 32767, got 40000",
        "tenants[0].policy.max_messages: expected a whole number from 1",
        "tenants[0].policy.max_body_bytes: expected a whole number from 1",
        "tenants[0].policy.max_cats: unknown field",
        "tenants[0].budgets[0].alert_thresholds: Thresholds are whole percentages from 1 to 100; not 0.",
        "tenants[0].budgets[1].alert_thresholds: Thresholds are whole percentages from 1 to 100; not 101.",
        "tenants[0].budgets[2].alert_thresholds: expected a list of percentages",
        "tenants[0].budgets[3].alert_thresholds: Thresholds are whole percentages",
        "tenants[1].allowed_routes[0]: expected a name",
        "tenants[1].allowed_routes[1]: expected a name",
        "routes[0].default_max_tokens: expected a whole number from 1",
    ]:
        assert expected in message
    assert not Tenant.objects.exists()


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


# --- provider resilience, route caching and hedging ---

RESILIENT = """
providers:
  - name: local
    kind: stub
    first_byte_timeout_s: 2.5
    stream_idle_timeout_s: "0.75"
    max_retries: 0
    circuit_failure_threshold: 2
    circuit_cooldown_s: 90
    models:
      - {name: echo, input_per_million: "0", output_per_million: "0"}
  - name: plain
    kind: stub
routes:
  - name: cached
    cache_ttl_seconds: 300
    semantic_cache: true
    semantic_threshold: "0.9"
    hedge_after_ms: 750
    targets: [{provider: local, model: echo}]
  - name: plain
    targets: [{provider: local, model: echo}]
"""


def test_resilience_caching_and_hedging_are_imported() -> None:
    config_import(data=load(RESILIENT))

    local = Provider.objects.get(name="local")
    assert (local.first_byte_timeout_s, local.stream_idle_timeout_s) == (
        Decimal("2.5"),
        Decimal("0.75"),
    )
    assert (local.max_retries, local.circuit_failure_threshold, local.circuit_cooldown_s) == (
        0,
        2,
        90,
    )
    plain = Provider.objects.get(name="plain")
    assert (plain.first_byte_timeout_s, plain.stream_idle_timeout_s) == (None, None)
    assert (plain.max_retries, plain.circuit_failure_threshold, plain.circuit_cooldown_s) == (
        1,
        5,
        30,
    )
    cached = Route.objects.get(name="cached")
    assert (cached.cache_ttl_seconds, cached.semantic_cache, cached.hedge_after_ms) == (
        300,
        True,
        750,
    )
    assert cached.semantic_threshold == Decimal("0.9")
    other = Route.objects.get(name="plain")
    assert (other.cache_ttl_seconds, other.semantic_cache, other.hedge_after_ms) == (0, False, None)
    assert other.semantic_threshold == Decimal("0.95")


def test_resilience_and_caching_round_trip_and_defaults_are_left_out() -> None:
    config_import(data=load(RESILIENT))
    first = config_dump(config_export())

    for expected in [
        "first_byte_timeout_s: '2.5'",
        "stream_idle_timeout_s: '0.75'",
        "max_retries: 0",
        "circuit_failure_threshold: 2",
        "circuit_cooldown_s: 90",
        "cache_ttl_seconds: 300",
        "semantic_cache: true",
        "semantic_threshold: '0.9'",  # a decimal string, like money
        "hedge_after_ms: 750",
    ]:
        assert expected in first
    for name in [
        "first_byte_timeout_s",
        "stream_idle_timeout_s",
        "max_retries",
        "circuit_failure_threshold",
        "circuit_cooldown_s",
        "cache_ttl_seconds",
        "semantic_cache",
        "semantic_threshold",
        "hedge_after_ms",
    ]:
        assert first.count(name) == 1  # the second provider and route keep their defaults

    _empty_database()
    config_import(data=load(first))
    assert config_dump(config_export()) == first
    assert not config_import(data=load(first)).changed


def test_a_non_default_threshold_is_exported_even_with_the_semantic_cache_off() -> None:
    data = load(MINIMAL)
    data["routes"][0]["semantic_threshold"] = "1"
    config_import(data=data)

    text = config_dump(config_export())

    assert "semantic_threshold: '1'" in text
    assert "semantic_cache" not in text
    _empty_database()
    config_import(data=load(text))
    assert Route.objects.get().semantic_threshold == Decimal(1)


def test_importing_resilience_and_caching_twice_writes_nothing(writes: list[str]) -> None:
    config_import(data=load(RESILIENT))
    writes.clear()

    report = config_import(data=load(RESILIENT))

    assert not report.changed
    assert writes == []


@pytest.mark.parametrize(
    ("section", "field", "value", "expected"),
    [
        ("providers", "first_byte_timeout_s", 3, Decimal(3)),
        ("providers", "stream_idle_timeout_s", None, None),  # left out: the total timeout
        ("providers", "max_retries", 3, 3),
        ("providers", "circuit_failure_threshold", 7, 7),
        ("providers", "circuit_cooldown_s", 0, 0),
        ("routes", "cache_ttl_seconds", 0, 0),
        ("routes", "semantic_cache", False, False),
        ("routes", "semantic_threshold", "0.85", Decimal("0.85")),
        ("routes", "hedge_after_ms", None, None),  # left out: no hedging
    ],
)
def test_one_changed_field_alone_updates_its_row(
    writes: list[str], section: str, field: str, value: object, expected: object
) -> None:
    config_import(data=load(RESILIENT))
    data = load(RESILIENT)
    if value is None:
        del data[section][0][field]
    else:
        data[section][0][field] = value
    writes.clear()

    report = config_import(data=data)

    model = Provider if section == "providers" else Route
    assert report.counts[section][Change.UPDATED] == 1
    assert report.total(Change.UPDATED) == 1
    assert writes == [model.__name__]
    assert getattr(model.objects.get(name=data[section][0]["name"]), field) == expected


def test_the_same_threshold_written_differently_writes_nothing(writes: list[str]) -> None:
    config_import(data=load(RESILIENT))
    data = load(RESILIENT)
    data["routes"][0]["semantic_threshold"] = "0.900"
    writes.clear()

    assert not config_import(data=data).changed
    assert writes == []


def test_leaving_resilience_and_caching_out_means_their_defaults() -> None:
    config_import(data=load(RESILIENT))

    config_import(
        data=load(MINIMAL.replace("name: echo\n    targets", "name: cached\n    targets"))
    )

    local = Provider.objects.get(name="local")
    assert (local.first_byte_timeout_s, local.stream_idle_timeout_s) == (None, None)
    assert (local.max_retries, local.circuit_failure_threshold, local.circuit_cooldown_s) == (
        1,
        5,
        30,
    )
    cached = Route.objects.get(name="cached")
    assert (cached.cache_ttl_seconds, cached.semantic_cache, cached.hedge_after_ms) == (
        0,
        False,
        None,
    )
    assert cached.semantic_threshold == Decimal("0.95")


def test_a_plain_number_threshold_reads_as_its_decimal() -> None:
    data = load(MINIMAL)
    data["routes"][0].update(semantic_cache=True, semantic_threshold=0.9)

    config_import(data=data)

    assert Route.objects.get().semantic_threshold == Decimal("0.9")


def test_resilience_caching_and_hedging_are_validated() -> None:
    text = """
providers:
  - name: local
    kind: stub
    first_byte_timeout_s: 0
    stream_idle_timeout_s: "0.0005"
    max_retries: 40000
    circuit_failure_threshold: 0
    circuit_cooldown_s: -5
  - name: other
    kind: stub
    first_byte_timeout_s: soon
    max_retries: true
routes:
  - name: r
    cache_ttl_seconds: "60"
    semantic_cache: "yes"
    semantic_threshold: "0"
    hedge_after_ms: 0
    targets: [{provider: local, model: echo}]
  - name: s
    semantic_threshold: "1.5"
    targets: [{provider: local, model: echo}]
  - name: t
    semantic_threshold: "0.9505"
    hedge_after_ms: 2.5
    targets: [{provider: local, model: echo}]
  - name: u
    semantic_threshold: high
    targets: [{provider: local, model: echo}]
"""
    with pytest.raises(ConfigError) as caught:
        config_import(data=load(text))

    message = str(caught.value)
    for expected in [
        "providers[0].first_byte_timeout_s: expected a number of seconds > 0, got 0",
        "providers[0].stream_idle_timeout_s: '0.0005' has more than 3 decimal places",
        "providers[0].max_retries: expected a whole number from 0 to 32767, got 40000",
        "providers[0].circuit_failure_threshold: expected a whole number from 1 to 32767, got 0",
        "providers[0].circuit_cooldown_s: expected a whole number >= 0, got -5",
        "providers[1].first_byte_timeout_s: expected a number of seconds > 0, got 'soon'",
        "providers[1].max_retries: expected a whole number >= 0, got True",
        "routes[0].cache_ttl_seconds: expected a whole number >= 0, got '60'",
        "routes[0].semantic_cache: expected true or false, got 'yes'",
        "routes[0].semantic_threshold: The semantic threshold is a similarity above 0 and at most 1",
        "routes[0].hedge_after_ms: expected a whole number from 1",
        "routes[1].semantic_threshold: The semantic threshold is a similarity above 0",
        "routes[2].semantic_threshold: The semantic threshold is a similarity above 0",
        "routes[2].hedge_after_ms: expected a whole number from 1",
        "routes[3].semantic_threshold: expected a decimal string like \"0.95\", got 'high'",
    ]:
        assert expected in message
    assert not Provider.objects.exists()


def test_the_documented_example_shows_resilience_caching_and_hedging() -> None:
    config_import(data=config_load_file(DOCS_EXAMPLE))

    openai = Provider.objects.get(name="openai")
    assert openai.stream_idle_timeout_s == Decimal("2.5")
    assert openai.circuit_failure_threshold == 3
    route = Route.objects.get(name="support_copilot")
    assert route.semantic_cache
    assert route.semantic_threshold == Decimal("0.92")
    assert route.hedge_after_ms == 1500


def test_route_upsert_applies_the_same_threshold_rule_as_the_reader() -> None:
    with pytest.raises(ValidationError) as caught:
        route_upsert(name="r", semantic_threshold=Decimal("1.001"))

    assert "above 0 and at most 1" in caught.value.message_dict["semantic_threshold"][0]
    assert not Route.objects.exists()
    assert route_upsert(name="r", semantic_threshold=Decimal("0.9000")).instance.pk


# --- the whole configuration, every kind of object, round trip --------------------------------

EVERYTHING = """
providers:
  - name: local
    kind: stub
    stub_delay_ms: 5
    max_retries: 3
    models:
      - {name: echo, input_per_million: "0.15", output_per_million: "0.60", context_window: 8192}
      - {name: echo2, input_per_million: "1", output_per_million: "2"}
  - name: remote
    kind: openai
    base_url: https://llm.example.com/v1
    api_key_env: REMOTE_API_KEY
    timeout_s: 45
    connect_timeout_s: "2.5"
    first_byte_timeout_s: 10
    stream_idle_timeout_s: 20
    circuit_failure_threshold: 7
    circuit_cooldown_s: 90
    enabled: false
    models:
      - {name: big, input_per_million: "2.50", output_per_million: "10.00"}
tenants:
  - slug: acme
    name: Acme Corp
    metadata: {team: platform, cost_centre: 42}
    allowed_routes: [chat, acme-private]
    policy: {max_prompt_tokens: 4000, max_output_tokens: 1000, max_n: 2, max_body_bytes: 100000, max_messages: 50, max_depth: 8}
    rate_limits:
      - {rpm: 600, tpm: 100000}
      - {model: echo, rpm: 60}
      - {model: echo2, tpm: 5000, enabled: false}
    budgets:
      - {period: monthly, max_cost_usd: "500.00", hard: true, alert_thresholds: [50, 90]}
      - {period: daily, max_tokens: 200000, hard: false, enabled: false}
  - slug: globex
    status: suspended
    rate_limits: {rpm: 10}
routes:
  - name: chat
    strategy: weighted
    description: the default chat route
    default_max_tokens: 512
    cache_ttl_seconds: 300
    semantic_cache: true
    semantic_threshold: "0.9"
    hedge_after_ms: 250
    targets:
      - {provider: local, model: echo, weight: 95}
      - {provider: local, model: echo2, weight: 5, enabled: false}
      - {provider: remote, model: big}
    rate_limits: {rpm: 1000}
    budgets:
      - {period: weekly, max_cost_usd: "25.50"}
  - name: acme-private
    tenant: acme
    enabled: false
    targets:
      - {provider: local, model: echo2}
redaction_rules:
  - {name: e-mail, detector: email, replacement: "[EMAIL]", scope: audit}
  - {name: ticket, pattern: "TICKET-[0-9]+", replacement: "[TICKET]", scope: audit_and_upstream, enabled: false}
rate_limits:
  - {rpm: 100000}
  - {tpm: 9000000, enabled: false}
"""


def _natural(instance: object) -> object:
    """A row's identity that survives a wipe and re-import (ids do not)."""
    if instance is None:
        return None
    if isinstance(instance, Tenant):
        return instance.slug
    if isinstance(instance, ApiKey):
        return instance.prefix
    if isinstance(instance, Provider):
        return instance.name
    if isinstance(instance, ProviderModel):
        return (instance.provider.name, instance.name)
    if isinstance(instance, Route):
        return (instance.tenant.slug if instance.tenant_id else None, instance.name)
    raise AssertionError(f"no natural key for {instance!r}")


# Not configuration: bookkeeping, or a key's lifecycle (keys are issued, not imported).
_NOT_CONFIG = {
    "id", "created_at", "updated_at", "key_hash", "expires_at", "revoked_at", "last_used_at",
}  # fmt: skip


def configuration_rows() -> dict[str, list[tuple]]:
    """Every configuration row in the database, every field (ids and foreign keys as
    natural keys), sorted: two databases with equal snapshots are configured alike.
    Fields are listed from the models, so a field added later is covered too."""
    snapshot: dict[str, list[tuple]] = {}
    for model in (
        Provider, ProviderModel, Tenant, ApiKey, Route, RouteTarget, RateLimit, Budget,
        RedactionRule,
    ):  # fmt: skip
        rows = []
        for row in model.objects.all():
            values = []
            for field in model._meta.concrete_fields:
                if field.name in _NOT_CONFIG:
                    continue
                value = getattr(row, field.name)
                if field.is_relation:
                    value = _natural(value)
                values.append((field.name, repr(value)))
            rows.append(tuple(values))
        snapshot[model.__name__] = sorted(rows)
    return snapshot


def _wipe_configuration() -> None:
    """Everything an import can write, gone or back to its defaults. Tenants and keys stay
    (deleting a tenant deletes its keys, which no file can bring back): they are reset."""
    RateLimit.objects.all().delete()
    Budget.objects.all().delete()
    Route.objects.all().delete()
    Provider.objects.all().delete()
    RedactionRule.objects.all().delete()
    policy_defaults = dict.fromkeys(UsagePolicy.POLICY_FIELDS)
    Tenant.objects.update(
        name="reset", status=Tenant.Status.ACTIVE, metadata={}, allowed_routes=[],
        **policy_defaults,
    )  # fmt: skip
    # A key's name is a label: an export carries those of the keys it lists, no more.
    ApiKey.objects.update(allowed_routes=[], **policy_defaults)


def _configure_keys() -> None:
    """Keys with every setting a key can carry: limits of the key scope, budgets, policy,
    allowed routes; one plain key (nothing configured) and one revoked."""

    acme = Tenant.objects.get(slug="acme")
    limited = factories.make_key(
        acme, name="billing service", allowed_routes=["chat"], max_output_tokens=256, max_n=1
    ).api_key
    rate_limits_replace(
        subject=Subject.of(limited),
        rate_limits=[RateLimitSpec(rpm=30, tpm=20000), RateLimitSpec(tpm=1000, enabled=False)],
    )
    budgets_replace(
        subject=Subject.of(limited),
        budgets=[BudgetSpec(period="monthly", max_cost_usd=Decimal("12.34"), hard=True)],
    )
    capped = factories.make_key(acme, name="batch jobs").api_key
    rate_limits_replace(subject=Subject.of(capped), rate_limits=[RateLimitSpec(rpm=5)])
    factories.make_key(acme, name="nothing special")
    revoked = factories.make_key(Tenant.objects.get(slug="globex"), name="old").api_key
    rate_limits_replace(subject=Subject.of(revoked), rate_limits=[RateLimitSpec(rpm=1)])
    api_key_revoke(api_key=revoked)


def test_export_wipe_import_reproduces_every_kind_of_object_exactly() -> None:
    config_import(data=load(EVERYTHING))
    _configure_keys()
    before = configuration_rows()
    assert {scope for scope in RateLimit.objects.values_list("scope", flat=True)} == set(Scope)
    assert RateLimit.objects.filter(scope=Scope.TENANT).exclude(model_name="").exists()
    first = config_dump(config_export())

    _wipe_configuration()
    assert configuration_rows() != before
    config_import(data=load(first))

    assert configuration_rows() == before
    assert config_dump(config_export()) == first
    assert not config_import(data=load(first)).changed


def test_an_export_names_keys_by_prefix_and_carries_no_secret() -> None:
    config_import(data=load(EVERYTHING))
    _configure_keys()
    text = config_dump(config_export())
    for api_key in ApiKey.objects.all():
        assert api_key.key_hash not in text
    limited = ApiKey.objects.get(name="billing service")
    assert f"prefix: {limited.prefix}" in text
    assert "nothing special" not in text  # a key with nothing configured is not listed


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
    _configure_keys()
    config_import(data=load(EVERYTHING), prune=True)  # lists acme, but none of its keys

    limited = ApiKey.objects.get(name="billing service")
    assert not RateLimit.objects.filter(api_key=limited).exists()
    assert not Budget.objects.filter(api_key=limited).exists()
    assert limited.allowed_routes == [] and limited.max_n is None
