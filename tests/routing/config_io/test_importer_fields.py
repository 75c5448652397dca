"""routing/config_io/importer.py, field by field: policies, allowed routes, output caps and
alert thresholds; provider resilience, route caching and hedging. Imported, idempotent,
updated alone, and their defaults when left out."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Budget, RateLimit, Scope
from gateway_project.lib.upsert import Change
from providers.models import Provider
from routing.config_io import config_import
from routing.models import Route
from tenants.models import Tenant, UsagePolicy
from tests.routing.config_io.support import GOVERNED, MINIMAL, RESILIENT, load

pytestmark = pytest.mark.django_db


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
