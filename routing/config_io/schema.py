"""The validated form of a gateway configuration document, and its error type."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from billing.services import BudgetSpec, RateLimitSpec

VERSION = 1


@dataclass(frozen=True)
class Issue:
    path: str
    message: str


class ConfigError(Exception):
    """Everything wrong with one configuration document; nothing was written."""

    def __init__(self, issues: list[Issue], *, source: str = "<config>") -> None:
        self.issues = issues
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.issues) == 1:
            issue = self.issues[0]
            return f"{self.source}: {issue.path}: {issue.message}"
        lines = [f"{self.source}: {len(self.issues)} problems:"]
        lines += [f"  {issue.path}: {issue.message}" for issue in self.issues]
        return "\n".join(lines)


@dataclass(frozen=True)
class Limits:
    """A subject's limits; None means the key was absent (leave them alone unless pruning)."""

    rate_limits: tuple[RateLimitSpec, ...] | None = None
    budgets: tuple[BudgetSpec, ...] | None = None


@dataclass(frozen=True)
class ModelConf:
    path: str
    name: str
    input_per_million: Decimal
    output_per_million: Decimal
    context_window: int | None


@dataclass(frozen=True)
class ProviderConf:
    path: str
    name: str
    kind: str
    base_url: str
    api_key_env: str
    api_version: str
    timeout_s: Decimal
    connect_timeout_s: Decimal
    first_byte_timeout_s: Decimal | None  # None: the total timeout
    stream_idle_timeout_s: Decimal | None
    max_retries: int
    circuit_failure_threshold: int
    circuit_cooldown_s: int
    stub_delay_ms: int
    enabled: bool
    models: tuple[ModelConf, ...]


@dataclass(frozen=True)
class KeyConf:
    """The settings of an API key that already exists (keys are issued, never imported),
    named by its public prefix."""

    path: str
    prefix: str
    name: str | None  # None: keep the key's current name (a label, not a setting)
    limits: Limits
    allowed_routes: tuple[str, ...] = ()
    policy: dict[str, int | None] = field(default_factory=dict)  # every policy field


@dataclass(frozen=True)
class TenantConf:
    path: str
    slug: str
    name: str
    status: str
    metadata: dict
    limits: Limits
    allowed_routes: tuple[str, ...] = ()
    policy: dict[str, int | None] = field(default_factory=dict)  # every policy field
    keys: tuple[KeyConf, ...] | None = None  # None: absent, the keys are left alone


@dataclass(frozen=True)
class TargetConf:
    path: str
    provider: str
    model: str
    weight: int
    enabled: bool


@dataclass(frozen=True)
class RouteConf:
    path: str
    name: str
    tenant: str | None
    strategy: str
    description: str
    default_max_tokens: int | None
    cache_ttl_seconds: int
    semantic_cache: bool
    semantic_threshold: Decimal
    hedge_after_ms: int | None  # None: no hedging
    enabled: bool
    targets: tuple[TargetConf, ...]
    limits: Limits


@dataclass(frozen=True)
class RuleConf:
    path: str
    name: str
    detector: str
    pattern: str
    replacement: str
    scope: str
    enabled: bool


@dataclass(frozen=True)
class GatewayConfig:
    providers: tuple[ProviderConf, ...]
    tenants: tuple[TenantConf, ...]
    routes: tuple[RouteConf, ...]
    redaction_rules: tuple[RuleConf, ...]
    rate_limits: tuple[RateLimitSpec, ...] | None
    warnings: tuple[str, ...]
