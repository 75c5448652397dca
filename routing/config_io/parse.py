"""Parse and validate a whole gateway configuration document, before anything is written.

The document is checked as a whole and every problem is reported with its path
(`routes[0].targets[1].model`), so one run of the importer lists everything to fix.
Nothing here touches the database: references to rows that may already exist (a route
naming a provider that is not in the file) are checked by the importer.

A field left out means its default, not "keep what the database has": the file
describes each entity it names completely, which is what makes it declarative.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.db.models import Model, PositiveSmallIntegerField

from audit.detectors import BUILT_IN
from audit.models import RedactionRule
from audit.redaction import REGEX_DETECTOR, compile_pattern
from providers.models import Provider
from providers.services import (
    DEFAULT_CIRCUIT_COOLDOWN_S,
    DEFAULT_CIRCUIT_FAILURE_THRESHOLD,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
)
from routing.config_io.reader import SECRET_NAME, Reader, join
from routing.config_io.schema import (
    VERSION,
    ConfigError,
    GatewayConfig,
    KeyConf,
    ModelConf,
    ProviderConf,
    RouteConf,
    RuleConf,
    TargetConf,
    TenantConf,
)
from routing.models import Route
from routing.services import DEFAULT_SEMANTIC_THRESHOLD
from tenants.keys import KEY_MARK, PREFIX_LENGTH
from tenants.models import ApiKey, Tenant, UsagePolicy

_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SLUG_HINT = " (letters, digits, '-' and '_' only)"
_KEY_PREFIX = re.compile(rf"^{KEY_MARK}[A-Za-z0-9]{{{PREFIX_LENGTH - len(KEY_MARK)}}}$")
_KEY_PREFIX_HINT = (
    f" (a key's public prefix: {KEY_MARK} and {PREFIX_LENGTH - len(KEY_MARK)} letters or digits)"
)
ZERO = Decimal(0)

TOP_LEVEL = ("version", "providers", "tenants", "routes", "redaction_rules", "rate_limits")
PROVIDER_FIELDS = (
    "name", "kind", "base_url", "api_key_env", "api_version", "timeout_s",
    "connect_timeout_s", "first_byte_timeout_s", "stream_idle_timeout_s", "max_retries",
    "circuit_failure_threshold", "circuit_cooldown_s", "stub_delay_ms", "enabled", "models",
)  # fmt: skip
MODEL_FIELDS = ("name", "input_per_million", "output_per_million", "context_window")
TENANT_FIELDS = (
    "slug", "name", "status", "metadata", "allowed_routes", "policy", "rate_limits", "budgets",
    "keys",
)  # fmt: skip
KEY_FIELDS = ("prefix", "name", "allowed_routes", "policy", "rate_limits", "budgets")
ROUTE_FIELDS = (
    "name", "tenant", "strategy", "description", "default_max_tokens", "cache_ttl_seconds",
    "semantic_cache", "semantic_threshold", "hedge_after_ms", "enabled", "targets",
    "rate_limits", "budgets",
)  # fmt: skip
POLICY_FIELDS = UsagePolicy.POLICY_FIELDS
_SMALL_INT_MAX = 32767  # max_n and max_depth are small-integer columns


_INT_MAX = 2**31 - 1


def _column_max(model: type[Model], name: str) -> int:
    small = isinstance(model._meta.get_field(name), PositiveSmallIntegerField)
    return _SMALL_INT_MAX if small else _INT_MAX


def _policy(
    r: Reader, value: Any, path: str, model: type[UsagePolicy] = Tenant
) -> dict[str, int | None]:
    """Every policy field, None where the file sets no limit."""
    m = r.mapping(value if value is not None else {}, path, POLICY_FIELDS)
    return {
        name: r.positive(m, name, path, maximum=_column_max(model, name)) for name in POLICY_FIELDS
    }


def _key(r: Reader, value: Any, path: str) -> KeyConf:
    m = r.mapping(value, path, KEY_FIELDS, required=("prefix",))
    return KeyConf(
        path=path,
        prefix=r.text(m, "prefix", path, pattern=_KEY_PREFIX, hint=_KEY_PREFIX_HINT),
        name=r.text(m, "name", path) or None,
        limits=r.limits(m, path, per_model=False),
        allowed_routes=r.names(m, "allowed_routes", path),
        policy=_policy(r, m.get("policy"), join(path, "policy"), ApiKey),
    )


TARGET_FIELDS = ("provider", "model", "weight", "enabled")
RULE_FIELDS = ("name", "detector", "pattern", "replacement", "scope", "enabled")


def _provider(r: Reader, value: Any, path: str) -> ProviderConf:
    m = r.mapping(value, path, PROVIDER_FIELDS, required=("name", "kind"))
    api_key_env = r.text(m, "api_key_env", path)
    if api_key_env and not _ENV_NAME.match(api_key_env):
        r.fail(
            join(path, "api_key_env"),
            "must be the NAME of an environment variable (like OPENAI_API_KEY), not a key",
        )
    models = []
    for where, item in r.items(m.get("models"), join(path, "models")):
        mm = r.mapping(item, where, MODEL_FIELDS, required=("name",))
        models.append(
            ModelConf(
                path=where,
                name=r.text(mm, "name", where),
                input_per_million=r.money(mm, "input_per_million", where) or ZERO,
                output_per_million=r.money(mm, "output_per_million", where) or ZERO,
                context_window=r.integer(mm, "context_window", where),
            )
        )
    r.duplicates([(model.name, model.path) for model in models], "model name")
    return ProviderConf(
        path=path,
        name=r.text(m, "name", path, pattern=_SLUG, hint=_SLUG_HINT),
        kind=r.text(m, "kind", path, choices=Provider.Kind),
        base_url=r.text(m, "base_url", path),
        api_key_env=api_key_env,
        api_version=r.text(m, "api_version", path),
        timeout_s=r.seconds(m, "timeout_s", path, default=DEFAULT_TIMEOUT_S),
        connect_timeout_s=r.seconds(
            m, "connect_timeout_s", path, default=DEFAULT_CONNECT_TIMEOUT_S
        ),
        first_byte_timeout_s=r.optional_seconds(m, "first_byte_timeout_s", path),
        stream_idle_timeout_s=r.optional_seconds(m, "stream_idle_timeout_s", path),
        max_retries=r.count(
            m, "max_retries", path, default=DEFAULT_MAX_RETRIES, maximum=_SMALL_INT_MAX
        ),
        # 0 would open the circuit before any failure; the breaker would read it as 1.
        circuit_failure_threshold=r.positive(
            m, "circuit_failure_threshold", path, maximum=_SMALL_INT_MAX
        )
        or DEFAULT_CIRCUIT_FAILURE_THRESHOLD,
        circuit_cooldown_s=r.count(
            m, "circuit_cooldown_s", path, default=DEFAULT_CIRCUIT_COOLDOWN_S, maximum=_INT_MAX
        ),
        stub_delay_ms=r.count(m, "stub_delay_ms", path, default=0),
        enabled=r.boolean(m, "enabled", path, default=True),
        models=tuple(models),
    )


def _tenant(r: Reader, value: Any, path: str) -> TenantConf:
    m = r.mapping(value, path, TENANT_FIELDS, required=("slug",))
    slug = r.text(m, "slug", path, pattern=_SLUG, hint=_SLUG_HINT)
    metadata = m.get("metadata") or {}
    if not isinstance(metadata, dict):
        r.fail(join(path, "metadata"), "expected a mapping")
        metadata = {}
    for key in metadata:
        if SECRET_NAME.search(str(key)):
            r.warnings.append(
                f"{join(path, 'metadata')}.{key}: the name suggests a secret; metadata is "
                "exported in clear and shown in the admin"
            )
    keys = None
    if m.get("keys") is not None:
        keys = tuple(_key(r, item, where) for where, item in r.items(m["keys"], join(path, "keys")))
        r.duplicates([(key.prefix, key.path) for key in keys], "key prefix")
    return TenantConf(
        path=path,
        slug=slug,
        name=r.text(m, "name", path, default=slug),
        status=r.text(m, "status", path, default=Tenant.Status.ACTIVE, choices=Tenant.Status),
        metadata=metadata,
        limits=r.limits(m, path, per_model=True),
        allowed_routes=r.names(m, "allowed_routes", path),
        policy=_policy(r, m.get("policy"), join(path, "policy")),
        keys=keys,
    )


def _route(r: Reader, value: Any, path: str) -> RouteConf:
    m = r.mapping(value, path, ROUTE_FIELDS, required=("name", "targets"))
    targets = []
    for where, item in r.items(m.get("targets"), join(path, "targets")):
        t = r.mapping(item, where, TARGET_FIELDS, required=("provider", "model"))
        targets.append(
            TargetConf(
                path=where,
                provider=r.text(t, "provider", where),
                model=r.text(t, "model", where),
                weight=r.count(t, "weight", where, default=1),
                enabled=r.boolean(t, "enabled", where, default=True),
            )
        )
    if isinstance(m.get("targets"), list) and not targets:
        r.fail(join(path, "targets"), "a route needs at least one target")
    return RouteConf(
        path=path,
        name=r.text(m, "name", path),
        tenant=r.text(m, "tenant", path) or None,
        strategy=r.text(
            m, "strategy", path, default=Route.Strategy.FALLBACK, choices=Route.Strategy
        ),
        description=r.text(m, "description", path),
        default_max_tokens=r.positive(
            m, "default_max_tokens", path, maximum=_column_max(Route, "default_max_tokens")
        ),
        cache_ttl_seconds=r.count(m, "cache_ttl_seconds", path, default=0, maximum=_INT_MAX),
        semantic_cache=r.boolean(m, "semantic_cache", path, default=False),
        semantic_threshold=r.similarity(
            m, "semantic_threshold", path, default=DEFAULT_SEMANTIC_THRESHOLD
        ),
        # 0 would send every request to two targets at once: leave it out for no hedging.
        hedge_after_ms=r.positive(m, "hedge_after_ms", path, maximum=_INT_MAX),
        enabled=r.boolean(m, "enabled", path, default=True),
        targets=tuple(targets),
        limits=r.limits(m, path, per_model=False),
    )


def _rule(r: Reader, value: Any, path: str) -> RuleConf:
    m = r.mapping(value, path, RULE_FIELDS, required=("name",))
    pattern = r.text(m, "pattern", path)
    # A pattern implies the regex detector; naming both is allowed only if they agree.
    detector = r.text(m, "detector", path, default=REGEX_DETECTOR if pattern else "")
    if not detector:
        r.fail(path, "set a detector or a pattern")
    elif detector != REGEX_DETECTOR and detector not in BUILT_IN:
        choices = ", ".join([*BUILT_IN, REGEX_DETECTOR])
        r.fail(join(path, "detector"), f"{detector!r} is not one of {choices}")
    elif detector != REGEX_DETECTOR and pattern:
        r.fail(
            join(path, "pattern"), f"a pattern only goes with the regex detector, not {detector}"
        )
    elif detector == REGEX_DETECTOR and not pattern:
        r.fail(join(path, "pattern"), "the regex detector needs a pattern")
    elif pattern:
        try:
            compile_pattern(pattern)
        except ValueError as exc:
            r.fail(join(path, "pattern"), str(exc))
    return RuleConf(
        path=path,
        name=r.text(m, "name", path),
        detector=detector,
        pattern=pattern,
        replacement=r.text(m, "replacement", path, default="[REDACTED]"),
        scope=r.text(
            m, "scope", path, default=RedactionRule.Scope.AUDIT, choices=RedactionRule.Scope
        ),
        enabled=r.boolean(m, "enabled", path, default=True),
    )


def parse_config(data: Any, *, source: str = "<config>") -> GatewayConfig:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    r = Reader()
    r.scan_secrets(data, "")
    m = r.mapping(data if data is not None else {}, "", TOP_LEVEL)
    if m.get("version", VERSION) != VERSION:
        r.fail("version", f"unsupported version {m['version']!r}; this gateway reads {VERSION}")
    providers = tuple(_provider(r, v, p) for p, v in r.items(m.get("providers"), "providers"))
    tenants = tuple(_tenant(r, v, p) for p, v in r.items(m.get("tenants"), "tenants"))
    routes = tuple(_route(r, v, p) for p, v in r.items(m.get("routes"), "routes"))
    rules = tuple(_rule(r, v, p) for p, v in r.items(m.get("redaction_rules"), "redaction_rules"))
    global_limits = None
    if "rate_limits" in m:
        global_limits = r.rate_limits(m["rate_limits"], "rate_limits", per_model=False)
    r.duplicates([(p.name, p.path) for p in providers], "provider name")
    r.duplicates([(t.slug, t.path) for t in tenants], "tenant slug")
    r.duplicates([((x.tenant, x.name), x.path) for x in routes], "route name for this tenant")
    r.duplicates([(x.name, x.path) for x in rules], "redaction rule name")
    if r.issues:
        raise ConfigError(r.issues, source=source)
    return GatewayConfig(
        providers=providers,
        tenants=tenants,
        routes=routes,
        redaction_rules=rules,
        rate_limits=global_limits,
        warnings=tuple(r.warnings),
    )
