"""Write the database's configuration as a document the importer reads back unchanged.

Fields equal to their default are left out, and everything is in a fixed order
(providers and models by name, tenants by slug, global routes before tenant routes,
rules and targets in the order they apply), so export -> import into an empty
database -> export gives the same text.

API keys are issued, not configured: their plaintext is never stored, and neither a
key nor its hash is exported. But what is set ON a key (its rate limits, budgets,
policy and allowed routes) is configuration, so every key that has any of it is listed
under its tenant by its public prefix, and an import puts those settings back on the
key with that prefix. Keys with nothing set are left out.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.utils import timezone

from audit.models import RedactionRule
from audit.redaction import REGEX_DETECTOR
from audit.selectors import redaction_rule_list
from billing.models import Budget, RateLimit, Scope, default_thresholds
from billing.price_book import load_price_book
from billing.selectors import budget_list, rate_limit_list
from providers.models import Provider
from providers.selectors import provider_list
from providers.services import (
    DEFAULT_CIRCUIT_COOLDOWN_S,
    DEFAULT_CIRCUIT_FAILURE_THRESHOLD,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
)
from routing.config_io.schema import VERSION
from routing.models import Route
from routing.selectors import route_list
from routing.services import DEFAULT_SEMANTIC_THRESHOLD
from tenants.models import ApiKey, Tenant, UsagePolicy
from tenants.selectors import api_keys_with_settings, tenant_list


def money_text(value: Decimal) -> str:
    """ "0.150000" -> "0.15", "500" -> "500.00": at least cents, no trailing zeros beyond."""
    whole, _, fraction = format(value.normalize(), "f").partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _seconds(value: Decimal) -> int | str:
    value = value.normalize()
    return int(value) if value == value.to_integral_value() else format(value, "f")


def decimal_text(value: Decimal) -> str:
    """0.950 -> "0.95", 1.000 -> "1": the shortest exact text, quoted like money."""
    return format(value.normalize(), "f")


def _rate_limits(limits: list[RateLimit]) -> dict[str, Any] | list[dict[str, Any]]:
    entries = []
    for limit in limits:
        entry: dict[str, Any] = {}
        if limit.model_name:
            entry["model"] = limit.model_name
        if limit.rpm is not None:
            entry["rpm"] = limit.rpm
        if limit.tpm is not None:
            entry["tpm"] = limit.tpm
        if not limit.enabled:
            entry["enabled"] = False
        entries.append(entry)
    # The common case, one subject-wide limit, keeps the short mapping form.
    if len(entries) == 1 and set(entries[0]) <= {"rpm", "tpm"}:
        return entries[0]
    return entries


def _budget(budget: Budget) -> dict[str, Any]:
    entry: dict[str, Any] = {"period": budget.period}
    if budget.max_tokens is not None:
        entry["max_tokens"] = budget.max_tokens
    if budget.max_cost_usd is not None:
        entry["max_cost_usd"] = money_text(budget.max_cost_usd)
    entry["hard"] = budget.hard
    if not budget.enabled:
        entry["enabled"] = False
    thresholds = sorted(set(budget.alert_thresholds or ()))
    if thresholds != default_thresholds():
        entry["alert_thresholds"] = thresholds
    return entry


class _Limits:
    """Budgets and rate limits grouped by what they apply to, read in two queries."""

    def __init__(self) -> None:
        self.rate_limits: dict[tuple[str, int | None], list[RateLimit]] = defaultdict(list)
        self.budgets: dict[tuple[str, int | None], list[Budget]] = defaultdict(list)
        for limit in rate_limit_list():
            self.rate_limits[self._key(limit)].append(limit)
        for budget in budget_list():
            self.budgets[self._key(budget)].append(budget)

    @staticmethod
    def _key(row: RateLimit | Budget) -> tuple[str, int | None]:
        if row.scope == Scope.TENANT:
            return row.scope, row.tenant_id
        if row.scope == Scope.ROUTE:
            return row.scope, row.route_id
        if row.scope == Scope.KEY:
            return row.scope, row.api_key_id
        return row.scope, None

    def key_ids(self) -> set[int]:
        """The keys that have a rate limit or a budget."""
        rows = [*self.rate_limits, *self.budgets]
        return {pk for scope, pk in rows if scope == Scope.KEY and pk is not None}

    def add_to(self, entry: dict[str, Any], scope: str, pk: int | None) -> None:
        if self.rate_limits.get((scope, pk)):
            entry["rate_limits"] = _rate_limits(self.rate_limits[(scope, pk)])
        if self.budgets.get((scope, pk)):
            entry["budgets"] = [_budget(budget) for budget in self.budgets[(scope, pk)]]


def _prices_in_force(providers: list[Provider]) -> dict[int, tuple[Decimal, Decimal]]:
    """Input and output prices in force now, by provider model id. A version scheduled
    for later takes effect in the proxy at its time without touching ProviderModel's
    columns, so the columns can be behind the price book: export what is charged."""
    ids = [model.pk for provider in providers for model in provider.models.all()]
    book = load_price_book(ids, now=timezone.now())
    return {
        model_id: (price.input_per_million, price.output_per_million)
        for model_id, price in book.current.items()
    }


def _provider(provider: Provider, prices: dict[int, tuple[Decimal, Decimal]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": provider.name, "kind": provider.kind}
    for name in ("base_url", "api_key_env", "api_version"):
        if getattr(provider, name):
            entry[name] = getattr(provider, name)
    if provider.timeout_s != DEFAULT_TIMEOUT_S:
        entry["timeout_s"] = _seconds(provider.timeout_s)
    if provider.connect_timeout_s != DEFAULT_CONNECT_TIMEOUT_S:
        entry["connect_timeout_s"] = _seconds(provider.connect_timeout_s)
    if provider.first_byte_timeout_s is not None:
        entry["first_byte_timeout_s"] = _seconds(provider.first_byte_timeout_s)
    if provider.stream_idle_timeout_s is not None:
        entry["stream_idle_timeout_s"] = _seconds(provider.stream_idle_timeout_s)
    if provider.max_retries != DEFAULT_MAX_RETRIES:
        entry["max_retries"] = provider.max_retries
    if provider.circuit_failure_threshold != DEFAULT_CIRCUIT_FAILURE_THRESHOLD:
        entry["circuit_failure_threshold"] = provider.circuit_failure_threshold
    if provider.circuit_cooldown_s != DEFAULT_CIRCUIT_COOLDOWN_S:
        entry["circuit_cooldown_s"] = provider.circuit_cooldown_s
    if provider.stub_delay_ms:
        entry["stub_delay_ms"] = provider.stub_delay_ms
    if not provider.enabled:
        entry["enabled"] = False
    models = []
    for model in sorted(provider.models.all(), key=lambda m: m.name):
        input_price, output_price = prices.get(
            model.pk, (model.input_per_million, model.output_per_million)
        )
        item: dict[str, Any] = {
            "name": model.name,
            "input_per_million": money_text(input_price),
            "output_per_million": money_text(output_price),
        }
        if model.context_window is not None:
            item["context_window"] = model.context_window
        models.append(item)
    if models:
        entry["models"] = models
    return entry


def _policy(owner: UsagePolicy) -> dict[str, int]:
    return {
        name: getattr(owner, name)
        for name in UsagePolicy.POLICY_FIELDS
        if getattr(owner, name) is not None
    }


def _key(api_key: ApiKey, limits: _Limits) -> dict[str, Any]:
    entry: dict[str, Any] = {"prefix": api_key.prefix, "name": api_key.name}
    if api_key.allowed_routes:
        entry["allowed_routes"] = list(api_key.allowed_routes)
    policy = _policy(api_key)
    if policy:
        entry["policy"] = policy
    limits.add_to(entry, Scope.KEY, api_key.pk)
    return entry


def _tenant(tenant: Tenant, limits: _Limits, keys: list[ApiKey]) -> dict[str, Any]:
    entry: dict[str, Any] = {"slug": tenant.slug, "name": tenant.name}
    if tenant.status != Tenant.Status.ACTIVE:
        entry["status"] = tenant.status
    if tenant.metadata:
        entry["metadata"] = tenant.metadata
    if tenant.allowed_routes:
        entry["allowed_routes"] = list(tenant.allowed_routes)
    policy = _policy(tenant)
    if policy:
        entry["policy"] = policy
    limits.add_to(entry, Scope.TENANT, tenant.pk)
    if keys:
        entry["keys"] = [_key(api_key, limits) for api_key in keys]
    return entry


def _route(route: Route, limits: _Limits) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": route.name}
    if route.tenant is not None:  # a null foreign key reads as None without a query
        entry["tenant"] = route.tenant.slug
    if route.strategy != Route.Strategy.FALLBACK:
        entry["strategy"] = route.strategy
    if route.description:
        entry["description"] = route.description
    if route.default_max_tokens is not None:
        entry["default_max_tokens"] = route.default_max_tokens
    if route.cache_ttl_seconds:
        entry["cache_ttl_seconds"] = route.cache_ttl_seconds
    if route.semantic_cache:
        entry["semantic_cache"] = True
    if route.semantic_threshold != DEFAULT_SEMANTIC_THRESHOLD:
        entry["semantic_threshold"] = decimal_text(route.semantic_threshold)
    if route.hedge_after_ms is not None:
        entry["hedge_after_ms"] = route.hedge_after_ms
    if not route.enabled:
        entry["enabled"] = False
    targets = []
    for target in route.targets.all():  # prefetched in position order
        item: dict[str, Any] = {
            "provider": target.provider_model.provider.name,
            "model": target.provider_model.name,
        }
        if target.weight != 1:
            item["weight"] = target.weight
        if not target.enabled:
            item["enabled"] = False
        targets.append(item)
    entry["targets"] = targets
    limits.add_to(entry, Scope.ROUTE, route.pk)
    return entry


def _rule(rule: RedactionRule) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": rule.name}
    if rule.detector == REGEX_DETECTOR:
        entry["pattern"] = rule.pattern  # a pattern implies the regex detector
    else:
        entry["detector"] = rule.detector
    entry["replacement"] = rule.replacement
    entry["scope"] = rule.scope
    if not rule.enabled:
        entry["enabled"] = False
    return entry


def config_export() -> dict[str, Any]:
    """The whole configuration as plain data, ready for `config_dump`."""
    limits = _Limits()
    keys: dict[int, list[ApiKey]] = defaultdict(list)
    for api_key in api_keys_with_settings(also=limits.key_ids()):  # in prefix order
        keys[api_key.tenant_id].append(api_key)
    routes = sorted(
        route_list(), key=lambda r: (r.tenant.slug if r.tenant is not None else "", r.name)
    )
    providers = list(provider_list())
    prices = _prices_in_force(providers)
    sections: dict[str, Any] = {
        "providers": [_provider(provider, prices) for provider in providers],
        "tenants": [_tenant(tenant, limits, keys[tenant.pk]) for tenant in tenant_list()],
        "routes": [_route(route, limits) for route in routes],
        "redaction_rules": [_rule(rule) for rule in redaction_rule_list()],
    }
    data: dict[str, Any] = {"version": VERSION}
    data.update((name, items) for name, items in sections.items() if items)
    global_limits = limits.rate_limits.get((Scope.GLOBAL, None))
    if global_limits:
        data["rate_limits"] = _rate_limits(global_limits)
    return data
