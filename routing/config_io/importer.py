"""Apply a gateway configuration document to the database, all or nothing.

Semantics, in short (docs/gateway.example.yaml says the same for operators):

- Upsert by natural key: providers by name, models by (provider, name), tenants by
  slug, routes by (tenant, name), redaction rules by name. A field left out of the file
  means its default.
- A route's targets, and the budgets and rate limits of any tenant, key, route or the
  global scope that lists them, are replaced as a whole by what the file says.
- API keys are never created (they are issued, and the file holds no key): a tenant's
  `keys` name existing keys by prefix and set their limits, budgets, policy and
  allowed routes. A prefix the database does not have, or that belongs to another
  tenant, is an error.
- Nothing is deleted by default: rows the file does not mention are left alone, so a
  partial file can be applied to a live gateway. With `prune=True` the file becomes
  the whole truth for routes (with their targets and limits), redaction rules, the
  limits of the subjects it names, and the settings of the keys of the tenants it
  names (a key it does not list loses them). Providers, models and tenants are never pruned:
  tenants own API keys and audit history, and models are referenced by targets;
  disable them instead.
- Everything runs in one transaction. Any problem raises ConfigError and writes
  nothing; `dry_run=True` does all the work and then rolls it back, so its report is
  exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.selectors import redaction_rule_list
from audit.services import redaction_rule_delete, redaction_rule_move, redaction_rule_upsert
from billing.models import Scope
from billing.selectors import api_key_ids_with_limits
from billing.services import Subject, budgets_replace, rate_limits_replace
from gateway_project.lib.upsert import Change, SyncResult
from providers.models import ProviderModel
from providers.selectors import provider_models_by_name
from providers.services import provider_model_upsert, provider_upsert
from routing.config_io.parse import parse_config
from routing.config_io.reader import join
from routing.config_io.schema import ConfigError, GatewayConfig, Issue, KeyConf, Limits
from routing.models import Route
from routing.selectors import route_find, route_names_visible_to
from routing.services import TargetSpec, route_delete, route_upsert
from tenants.models import ApiKey, Tenant
from tenants.selectors import api_keys_by_prefix, api_keys_with_settings, tenants_by_slug
from tenants.services import api_key_configure, tenant_upsert

ENTITIES = (
    "providers", "provider_models", "tenants", "api_keys", "routes", "budgets", "rate_limits",
    "redaction_rules",
)  # fmt: skip


@dataclass
class ImportReport:
    dry_run: bool = False
    prune: bool = False
    counts: dict[str, dict[Change, int]] = field(
        default_factory=lambda: {entity: dict.fromkeys(Change, 0) for entity in ENTITIES}
    )
    warnings: list[str] = field(default_factory=list)

    def add(self, entity: str, change: Change, n: int = 1) -> None:
        self.counts[entity][change] += n

    def add_sync(self, entity: str, result: SyncResult) -> None:
        self.add(entity, Change.CREATED, result.created)
        self.add(entity, Change.UPDATED, result.updated)
        self.add(entity, Change.UNCHANGED, result.unchanged)
        self.add(entity, Change.DELETED, result.deleted)

    def total(self, change: Change) -> int:
        return sum(counts[change] for counts in self.counts.values())

    @property
    def changed(self) -> bool:
        return any(
            self.total(change) for change in (Change.CREATED, Change.UPDATED, Change.DELETED)
        )

    def summary(self) -> str:
        lines = []
        for entity, counts in self.counts.items():
            if any(counts.values()):
                parts = [f"{n} {change}" for change, n in counts.items() if n]
                lines.append(f"{entity}: {', '.join(parts)}")
        if not self.changed:
            lines.append("Nothing to change.")
        if self.dry_run:
            lines.append("Dry run: nothing was written.")
        return "\n".join(lines)


def _messages(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{name}: {' '.join(errors)}" for name, errors in exc.message_dict.items()]
    return list(exc.messages)


class _Importer:
    def __init__(self, config: GatewayConfig, report: ImportReport, source: str) -> None:
        self.config = config
        self.report = report
        self.source = source
        self.keys: dict[str, ApiKey] = {}  # the keys the file names, by prefix

    @contextmanager
    def at(self, path: str) -> Iterator[None]:
        """Report a model validation failure under the document path that caused it."""
        try:
            yield
        except ValidationError as exc:
            issues = [Issue(path, message) for message in _messages(exc)]
            raise ConfigError(issues, source=self.source) from exc

    def run(self) -> None:
        self.check_references()
        self.apply_providers()
        tenants = self.apply_tenants()
        routes = self.apply_routes(tenants)
        self.apply_keys()  # after the routes, which their allowed_routes may name
        self.apply_limits(Subject.of(None), Limits(rate_limits=self.config.rate_limits), "")
        rules = self.apply_rules()
        if self.report.prune:
            self.prune(routes, rules)
            self.prune_keys()

    def check_references(self) -> None:
        """Every tenant and model a route names exists, in the file or the database, and
        every route a tenant is limited to is one it can see."""
        tenants = {t.slug for t in self.config.tenants}
        wanted = {route.tenant for route in self.config.routes if route.tenant} - tenants
        tenants |= set(tenants_by_slug(slugs=wanted))
        models = {(p.name, m.name) for p in self.config.providers for m in p.models}
        models |= set(provider_models_by_name())
        providers = {provider for provider, _ in models}
        issues = []
        for route in self.config.routes:
            if route.tenant and route.tenant not in tenants:
                issues.append(Issue(join(route.path, "tenant"), f"no tenant {route.tenant!r}"))
            for target in route.targets:
                if target.provider not in providers:
                    message = f"no provider {target.provider!r}"
                elif (target.provider, target.model) not in models:
                    message = f"provider {target.provider!r} has no model {target.model!r}"
                else:
                    continue
                issues.append(Issue(target.path, message + " in this file or the database"))
        issues += self.check_allowed_routes()
        issues += self.check_keys()
        if issues:
            raise ConfigError(issues, source=self.source)

    def check_allowed_routes(self) -> list[Issue]:
        """A tenant's allowed_routes must name routes it can see (global or its own): a typo
        would lock its keys out of the route it was meant for. Routes count whether they
        are in this file or, unless pruning (which deletes the others), in the database."""
        limited = [conf for conf in self.config.tenants if conf.allowed_routes]
        if not limited:
            return []
        in_file: dict[str | None, set[str]] = {}
        for route in self.config.routes:
            in_file.setdefault(route.tenant, set()).add(route.name)
        existing = tenants_by_slug(slugs={conf.slug for conf in limited})
        issues = []
        for conf in limited:
            visible = in_file.get(None, set()) | in_file.get(conf.slug, set())
            missing = [name for name in conf.allowed_routes if name not in visible]
            if missing and not self.report.prune:
                tenant = existing.get(conf.slug)
                if tenant is not None:
                    known = route_names_visible_to(tenant=tenant, among=missing)
                else:  # a new tenant owns no routes yet; the global ones it can see
                    known = {name for name in missing if route_find(name=name) is not None}
                missing = [name for name in missing if name not in known]
            if missing:
                issues.append(
                    Issue(
                        join(conf.path, "allowed_routes"),
                        f"no route named {', '.join(missing)} for tenant {conf.slug!r} "
                        "(global or its own) in this file"
                        + ("" if self.report.prune else " or the database"),
                    )
                )
        return issues

    def key_confs(self) -> list[tuple[str, KeyConf]]:
        return [(t.slug, key) for t in self.config.tenants for key in t.keys or ()]

    def check_keys(self) -> list[Issue]:
        """Every key the file names exists and belongs to the tenant it is listed under."""
        confs = self.key_confs()
        self.keys = api_keys_by_prefix(prefixes=[key.prefix for _, key in confs])
        issues = []
        for slug, conf in confs:
            api_key = self.keys.get(conf.prefix)
            if api_key is None:
                message = (
                    f"no API key {conf.prefix} in the database (keys are issued with "
                    "issue_api_key or the admin, never imported)"
                )
            elif api_key.tenant.slug != slug:
                message = f"key {conf.prefix} belongs to another tenant, not {slug!r}"
            else:
                continue
            issues.append(Issue(join(conf.path, "prefix"), message))
        return issues

    def apply_providers(self) -> None:
        for conf in self.config.providers:
            with self.at(conf.path):
                result = provider_upsert(
                    name=conf.name,
                    kind=conf.kind,
                    base_url=conf.base_url,
                    api_key_env=conf.api_key_env,
                    api_version=conf.api_version,
                    timeout_s=conf.timeout_s,
                    connect_timeout_s=conf.connect_timeout_s,
                    first_byte_timeout_s=conf.first_byte_timeout_s,
                    stream_idle_timeout_s=conf.stream_idle_timeout_s,
                    max_retries=conf.max_retries,
                    circuit_failure_threshold=conf.circuit_failure_threshold,
                    circuit_cooldown_s=conf.circuit_cooldown_s,
                    stub_delay_ms=conf.stub_delay_ms,
                    enabled=conf.enabled,
                )
            self.report.add("providers", result.change)
            for model in conf.models:
                with self.at(model.path):
                    upserted = provider_model_upsert(
                        provider=result.instance,
                        name=model.name,
                        input_per_million=model.input_per_million,
                        output_per_million=model.output_per_million,
                        context_window=model.context_window,
                    )
                self.report.add("provider_models", upserted.change)

    def apply_tenants(self) -> dict[str, Tenant]:
        for conf in self.config.tenants:
            with self.at(conf.path):
                result = tenant_upsert(
                    slug=conf.slug,
                    name=conf.name,
                    status=conf.status,
                    metadata=conf.metadata,
                    allowed_routes=conf.allowed_routes,
                    **conf.policy,
                )
            self.report.add("tenants", result.change)
            self.apply_limits(Subject.of(result.instance), conf.limits, conf.path)
        return tenants_by_slug(slugs={route.tenant for route in self.config.routes if route.tenant})

    def apply_routes(self, tenants: dict[str, Tenant]) -> set[int]:
        models: dict[tuple[str, str], ProviderModel] = provider_models_by_name()
        kept: set[int] = set()
        for conf in self.config.routes:
            targets = [
                TargetSpec(
                    provider_model=models[(target.provider, target.model)],
                    weight=target.weight,
                    enabled=target.enabled,
                )
                for target in conf.targets
            ]
            with self.at(conf.path):
                result = route_upsert(
                    name=conf.name,
                    tenant=tenants[conf.tenant] if conf.tenant else None,
                    strategy=conf.strategy,
                    description=conf.description,
                    default_max_tokens=conf.default_max_tokens,
                    cache_ttl_seconds=conf.cache_ttl_seconds,
                    semantic_cache=conf.semantic_cache,
                    semantic_threshold=conf.semantic_threshold,
                    hedge_after_ms=conf.hedge_after_ms,
                    enabled=conf.enabled,
                    targets=targets,
                )
            self.report.add("routes", result.change)
            kept.add(result.instance.pk)
            self.apply_limits(Subject.of(result.instance), conf.limits, conf.path)
        return kept

    def apply_keys(self) -> None:
        for _, conf in self.key_confs():
            api_key = self.keys[conf.prefix]
            with self.at(conf.path):
                result = api_key_configure(
                    api_key=api_key,
                    name=conf.name,
                    allowed_routes=conf.allowed_routes,
                    **conf.policy,
                )
            self.report.add("api_keys", result.change)
            self.apply_limits(Subject.of(api_key), conf.limits, conf.path)

    def apply_limits(self, subject: Subject, limits: Limits, path: str) -> None:
        # Absent from the file: untouched, unless pruning makes the file the whole truth.
        prune = self.report.prune
        rate_limits = limits.rate_limits if limits.rate_limits is not None or not prune else ()
        budgets = limits.budgets if limits.budgets is not None or not prune else ()
        if rate_limits is not None:
            with self.at(join(path, "rate_limits")):
                result = rate_limits_replace(subject=subject, rate_limits=list(rate_limits))
            self.report.add_sync("rate_limits", result)
        if budgets is not None and subject.scope != Scope.GLOBAL:  # budgets are never global
            with self.at(join(path, "budgets")):
                result = budgets_replace(subject=subject, budgets=list(budgets))
            self.report.add_sync("budgets", result)

    def apply_rules(self) -> set[str]:
        for position, conf in enumerate(self.config.redaction_rules):
            with self.at(conf.path):
                result = redaction_rule_upsert(
                    name=conf.name,
                    detector=conf.detector,
                    pattern=conf.pattern,
                    replacement=conf.replacement,
                    scope=conf.scope,
                    enabled=conf.enabled,
                    position=position,
                )
            self.report.add("redaction_rules", result.change)
        names = {conf.name for conf in self.config.redaction_rules}
        if not self.report.prune:
            # Rules the file does not name (the defaults, an admin's) apply after the
            # file's, in their own order: positions stay distinct, so what an export lists
            # is the order rules apply in, and importing it again changes nothing.
            others = redaction_rule_list().exclude(name__in=names)
            for offset, rule in enumerate(others):
                if redaction_rule_move(rule=rule, position=len(names) + offset):
                    self.report.add("redaction_rules", Change.UPDATED)
        return names

    def prune(self, routes: set[int], rules: set[str]) -> None:
        for route in Route.objects.exclude(pk__in=routes):
            route_delete(route=route)
            self.report.add("routes", Change.DELETED)
        for rule in redaction_rule_list().exclude(name__in=rules):
            redaction_rule_delete(rule=rule)
            self.report.add("redaction_rules", Change.DELETED)

    def prune_keys(self) -> None:
        """Keys of the file's tenants that it does not list keep no settings."""
        listed = {conf.prefix for _, conf in self.key_confs()}
        tenants = tenants_by_slug(slugs={conf.slug for conf in self.config.tenants})
        candidates = api_keys_with_settings(
            also=api_key_ids_with_limits(), tenant_ids=[tenant.pk for tenant in tenants.values()]
        )
        for api_key in candidates:
            if api_key.prefix in listed:
                continue
            result = api_key_configure(api_key=api_key)
            if result.change == Change.UPDATED:
                self.report.add("api_keys", Change.UPDATED)
            self.apply_limits(Subject.of(api_key), Limits(), "")


def config_import(
    *, data: Any, dry_run: bool = False, prune: bool = False, source: str = "<config>"
) -> ImportReport:
    """Validate `data` (a parsed YAML document) and apply it in one transaction.

    Raises ConfigError, with nothing written, if anything in it is wrong.
    """
    config = parse_config(data, source=source)
    report = ImportReport(dry_run=dry_run, prune=prune, warnings=list(config.warnings))
    with transaction.atomic():
        _Importer(config, report, source).run()
        if dry_run:
            transaction.set_rollback(True)
    return report
