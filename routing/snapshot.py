"""The in-process configuration snapshot that keeps the proxy path free of the ORM.

Keys, tenants, routes with their targets and prices, and redaction rules are read from
the database once, compiled into plain immutable objects, and served from memory. A
write anywhere in the configuration sets a new cross-process generation token
(`gateway_project.lib.generation`); each process looks at that token at most once per
GATEWAY_SNAPSHOT_CHECK_SECONDS and rebuilds when it moved, and rebuilds any snapshot older
than GATEWAY_SNAPSHOT_MAX_AGE_SECONDS whatever the token says. So an admin change (a
revoked key, a suspended tenant, a new route) reaches every process within the check
interval while Redis answers, and within the maximum age whatever Redis does; a warm
request makes no database query at all.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import orjson
from django.conf import settings

from audit.redaction import CompiledRules, compile_rules
from billing.governance import BudgetSpec, LimitSpec
from gateway_project.lib import generation
from gateway_project.lib.db import off_loop
from providers.base import Target

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Policy:
    """Request limits; None means none at this level."""

    max_prompt_tokens: int | None = None
    max_output_tokens: int | None = None
    max_n: int | None = None
    max_body_bytes: int | None = None
    max_messages: int | None = None
    max_depth: int | None = None

    @classmethod
    def of(cls, row: object) -> Policy:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    @classmethod
    def from_values(cls, values: dict) -> Policy:
        return cls(**{name: values[name] for name in cls.__dataclass_fields__})

    def tightened_by(self, other: Policy) -> Policy:
        """The stricter of two policies, field by field."""

        def smaller(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        return Policy(
            **{
                name: smaller(getattr(self, name), getattr(other, name))
                for name in self.__dataclass_fields__
            }
        )


@dataclass(frozen=True, slots=True)
class TenantEntry:
    id: int
    slug: str
    name: str
    active: bool
    allowed_routes: frozenset[str] = frozenset()
    policy: Policy = Policy()


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: int
    prefix: str
    key_hash: str
    name: str
    tenant_id: int
    allowed_routes: frozenset[str]
    expires_at: datetime | None
    revoked: bool
    policy: Policy = Policy()  # already tightened by the tenant's

    def may_use(self, route_name: str) -> bool:
        return not self.allowed_routes or route_name in self.allowed_routes


@dataclass(frozen=True)
class RouteEntry:
    id: int
    name: str
    tenant_id: int | None
    strategy: str
    targets: tuple[Target, ...]
    default_max_tokens: int | None = None
    cache_ttl_seconds: int = 0
    semantic_cache: bool = False
    semantic_threshold: float = 0.95
    hedge_after_ms: int | None = None

    @property
    def max_input_price(self) -> Decimal:
        return max((t.input_per_million for t in self.targets), default=Decimal(0))

    @property
    def max_output_price(self) -> Decimal:
        return max((t.output_per_million for t in self.targets), default=Decimal(0))


@dataclass(frozen=True)
class Governance:
    """Rate limits and budgets by what they apply to."""

    global_limits: tuple[LimitSpec, ...] = ()
    tenant_limits: dict[int, tuple[LimitSpec, ...]] = field(default_factory=dict)
    tenant_model_limits: dict[tuple[int, str], tuple[LimitSpec, ...]] = field(default_factory=dict)
    key_limits: dict[int, tuple[LimitSpec, ...]] = field(default_factory=dict)
    route_limits: dict[int, tuple[LimitSpec, ...]] = field(default_factory=dict)
    tenant_budgets: dict[int, tuple[BudgetSpec, ...]] = field(default_factory=dict)
    key_budgets: dict[int, tuple[BudgetSpec, ...]] = field(default_factory=dict)
    route_budgets: dict[int, tuple[BudgetSpec, ...]] = field(default_factory=dict)

    def limits_for(
        self, *, tenant_id: int, key_id: int, route_id: int, route_name: str
    ) -> list[LimitSpec]:
        return [
            *self.key_limits.get(key_id, ()),
            *self.tenant_limits.get(tenant_id, ()),
            *self.tenant_model_limits.get((tenant_id, route_name), ()),
            *self.route_limits.get(route_id, ()),
            *self.global_limits,
        ]

    def budgets_for(self, *, tenant_id: int, key_id: int, route_id: int) -> list[BudgetSpec]:
        return [
            *self.key_budgets.get(key_id, ()),
            *self.tenant_budgets.get(tenant_id, ()),
            *self.route_budgets.get(route_id, ()),
        ]


_SUBJECT_COLUMN = {"tenant": "tenant_id", "key": "api_key_id", "route": "route_id"}


def _build_governance() -> Governance:
    from billing.models import Budget, RateLimit

    gov = Governance()
    scoped_limits = {
        "tenant": gov.tenant_limits,
        "key": gov.key_limits,
        "route": gov.route_limits,
    }
    global_limits: list[LimitSpec] = []
    limit_rows = (
        RateLimit.objects.filter(enabled=True)
        .order_by("id")
        .values("id", "scope", "tenant_id", "api_key_id", "route_id", "model_name", "rpm", "tpm")
    )
    for row in limit_rows:
        scope, rpm, tpm = row["scope"], row["rpm"], row["tpm"]
        if scope == "global":
            global_limits.append(LimitSpec(f"global:{row['id']}", rpm, tpm))
        elif scope == "tenant" and row["model_name"]:
            spec = LimitSpec(f"tenant-model:{row['id']}", rpm, tpm)
            bucket = (row["tenant_id"], row["model_name"])
            gov.tenant_model_limits[bucket] = (*gov.tenant_model_limits.get(bucket, ()), spec)
        else:
            subject = row[_SUBJECT_COLUMN[scope]]
            spec = LimitSpec(f"{scope}:{row['id']}", rpm, tpm)
            target = scoped_limits[scope]
            target[subject] = (*target.get(subject, ()), spec)
    scoped_budgets = {
        "tenant": gov.tenant_budgets,
        "key": gov.key_budgets,
        "route": gov.route_budgets,
    }
    budget_rows = (
        Budget.objects.filter(enabled=True)
        .order_by("id")
        .values(
            "id",
            "scope",
            "tenant_id",
            "api_key_id",
            "route_id",
            "period",
            "hard",
            "max_tokens",
            "max_cost_usd",
            "alert_thresholds",
        )
    )
    for row in budget_rows:
        scope = row["scope"]
        if scope not in scoped_budgets:
            continue
        subject = row[_SUBJECT_COLUMN[scope]]
        spec = BudgetSpec(
            id=row["id"],
            scope=scope,
            subject_id=subject,
            period=row["period"],
            hard=row["hard"],
            max_tokens=row["max_tokens"],
            max_cost=row["max_cost_usd"],
            thresholds=tuple(sorted(row["alert_thresholds"] or ())),
        )
        target = scoped_budgets[scope]
        target[subject] = (*target.get(subject, ()), spec)
    return Governance(
        global_limits=tuple(global_limits),
        tenant_limits=gov.tenant_limits,
        tenant_model_limits=gov.tenant_model_limits,
        key_limits=gov.key_limits,
        route_limits=gov.route_limits,
        tenant_budgets=gov.tenant_budgets,
        key_budgets=gov.key_budgets,
        route_budgets=gov.route_budgets,
    )


def _key_entry(row, tenants: dict[int, TenantEntry]) -> KeyEntry:  # type: ignore[no-untyped-def]
    tenant = tenants.get(row.tenant_id)
    own = Policy.of(row)
    return KeyEntry(
        id=row.id,
        prefix=row.prefix,
        key_hash=row.key_hash,
        name=row.name,
        tenant_id=row.tenant_id,
        allowed_routes=frozenset(row.allowed_routes or ()),
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        policy=tenant.policy.tightened_by(own) if tenant is not None else own,
    )


def load_key_entry(prefix: str, tenants: dict[int, TenantEntry]) -> KeyEntry | None:
    from tenants.models import ApiKey

    row = ApiKey.objects.filter(prefix=prefix).first()
    return None if row is None else _key_entry(row, tenants)


class KeyDirectory:
    """The API keys this process has been shown, read from the database one at a time.

    Tenants, routes and limits are few and read whole into the snapshot; keys can number
    in the hundreds of thousands (bench: 100,000), and reading them all would cost every
    worker tens of MB and every configuration change a full re-read. So a key is read on
    its first use (one indexed query, in a worker thread) and then served from here with
    no query, like the rest of the snapshot. The directory belongs to one snapshot: any
    change to keys or tenants moves the generation, the next snapshot starts empty, and a
    revoked, expired or new key is seen within GATEWAY_SNAPSHOT_CHECK_SECONDS as before.
    Unknown prefixes are remembered too (as None), so a stream of bad keys costs one
    query per distinct prefix; past `capacity` entries the oldest are forgotten.
    """

    def __init__(self, tenants: dict[int, TenantEntry], capacity: int) -> None:
        self._tenants = tenants
        self._capacity = max(1, capacity)
        self._entries: dict[str, KeyEntry | None] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def aget(self, prefix: str) -> KeyEntry | None:
        try:
            return self._entries[prefix]
        except KeyError:
            pass
        entry = await off_loop(functools.partial(load_key_entry, prefix, self._tenants))
        self.remember(prefix, entry)
        return entry

    def remember(self, prefix: str, entry: KeyEntry | None) -> None:
        entries = self._entries
        while len(entries) >= self._capacity:
            del entries[next(iter(entries))]  # the oldest (dicts keep insertion order)
        entries[prefix] = entry


@dataclass
class Snapshot:
    generation: str
    version: str  # hash of the routing configuration, stamped on every audit row
    tenants: dict[int, TenantEntry]
    keys: KeyDirectory
    global_routes: dict[str, RouteEntry]
    tenant_routes: dict[tuple[int, str], RouteEntry]
    redaction: CompiledRules
    governance: Governance = field(default_factory=Governance)
    checked_at: float = field(default=0.0)  # last generation check (or rebuild attempt)
    built_at: float = field(default=0.0)

    def too_old(self, now: float) -> bool:
        return now - self.built_at >= settings.GATEWAY_SNAPSHOT_MAX_AGE_SECONDS

    def route_for(self, tenant_id: int, name: str) -> RouteEntry | None:
        """A tenant's own route shadows a global one of the same name."""
        return self.tenant_routes.get((tenant_id, name)) or self.global_routes.get(name)

    def routes_visible_to(self, key: KeyEntry) -> list[RouteEntry]:
        names: dict[str, RouteEntry] = dict(self.global_routes)
        for (tenant_id, name), route in self.tenant_routes.items():
            if tenant_id == key.tenant_id:
                names[name] = route
        return [route for name, route in sorted(names.items()) if key.may_use(name)]


def _target(rt, pm, provider) -> Target:  # type: ignore[no-untyped-def]
    return Target(
        provider_id=provider.id,
        provider_name=provider.name,
        kind=provider.kind,
        base_url=provider.base_url.rstrip("/"),
        api_key_env=provider.api_key_env,
        api_version=provider.api_version,
        model=pm.name,
        input_per_million=pm.input_per_million,
        output_per_million=pm.output_per_million,
        connect_timeout_s=float(provider.connect_timeout_s),
        timeout_s=float(provider.timeout_s),
        stub_delay_ms=provider.stub_delay_ms,
        context_window=pm.context_window,
        weight=rt.weight,
        first_byte_timeout_s=_seconds(provider.first_byte_timeout_s),
        stream_idle_timeout_s=_seconds(provider.stream_idle_timeout_s),
        max_retries=provider.max_retries,
        circuit_failure_threshold=provider.circuit_failure_threshold,
        circuit_cooldown_s=provider.circuit_cooldown_s,
    )


def _seconds(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def build_snapshot() -> Snapshot:
    """Read the whole configuration (a handful of queries, whatever its size)."""
    from audit.models import RedactionRule
    from routing.models import Route, RouteTarget
    from tenants.models import Tenant

    built_at = generation.monotonic()  # before any read: the age counts from the oldest
    # Read the generation first: a change landing while we read makes the next check rebuild.
    try:
        gen = generation.current()
    except Exception:
        # Redis away: build anyway; the next readable generation differs and rebuilds.
        logger.warning("config generation unreadable while building the snapshot")
        gen = "unknown"
    # Rows as dicts, not model instances: with 10,000 tenants and as many limits and
    # budgets (bench), building ORM objects was most of a rebuild's time. Equal policies
    # (nearly all of them: unset) are shared.
    policies: dict[Policy, Policy] = {}
    tenants = {}
    for t in Tenant.objects.values(
        "id", "slug", "name", "status", "allowed_routes", *Policy.__dataclass_fields__
    ):
        policy = Policy.from_values(t)
        tenants[t["id"]] = TenantEntry(
            id=t["id"],
            slug=t["slug"],
            name=t["name"],
            active=t["status"] == Tenant.Status.ACTIVE,
            allowed_routes=frozenset(t["allowed_routes"] or ()),
            policy=policies.setdefault(policy, policy),
        )
    targets_by_route: dict[int, list[Target]] = {}
    version_source: list = []
    for rt in (
        RouteTarget.objects.filter(enabled=True, provider_model__provider__enabled=True)
        .select_related("provider_model__provider")
        .order_by("route_id", "position", "id")
    ):
        pm = rt.provider_model
        target = _target(rt, pm, pm.provider)
        targets_by_route.setdefault(rt.route_id, []).append(target)
    global_routes: dict[str, RouteEntry] = {}
    tenant_routes: dict[tuple[int, str], RouteEntry] = {}
    for route in Route.objects.filter(enabled=True).order_by("id"):
        entry = RouteEntry(
            id=route.id,
            name=route.name,
            tenant_id=route.tenant_id,
            strategy=route.strategy,
            targets=tuple(targets_by_route.get(route.id, ())),
            default_max_tokens=route.default_max_tokens,
            cache_ttl_seconds=route.cache_ttl_seconds,
            semantic_cache=route.semantic_cache,
            semantic_threshold=float(route.semantic_threshold),
            hedge_after_ms=route.hedge_after_ms,
        )
        if route.tenant_id is None:
            global_routes[route.name] = entry
        else:
            tenant_routes[(route.tenant_id, route.name)] = entry
        version_source.append(
            [
                route.tenant_id,
                route.name,
                route.strategy,
                [
                    [
                        t.provider_name,
                        t.kind,
                        t.base_url,
                        t.model,
                        str(t.input_per_million),
                        str(t.output_per_million),
                        t.weight,
                        t.timeout_s,
                    ]
                    for t in entry.targets
                ],
            ]
        )
    rules = list(RedactionRule.objects.filter(enabled=True).order_by("position", "id"))
    version_source.append([[r.name, r.detector, r.pattern, r.replacement, r.scope] for r in rules])
    version = hashlib.sha256(orjson.dumps(version_source)).hexdigest()[:16]
    return Snapshot(
        generation=gen,
        version=version,
        tenants=tenants,
        keys=KeyDirectory(tenants, settings.GATEWAY_KEY_CACHE_SIZE),
        global_routes=global_routes,
        tenant_routes=tenant_routes,
        redaction=compile_rules(rules),
        governance=_build_governance(),
        checked_at=built_at,
        built_at=built_at,
    )


class SnapshotHolder:
    """Holds this process's snapshot and refreshes it when the generation moves, or when it
    is older than GATEWAY_SNAPSHOT_MAX_AGE_SECONDS whatever the generation says.

    The age bound is what makes a committed change reach every process whatever Redis did:
    a bump lost to a Redis stall (and not yet retried, or owed by a process that exited), a
    process that cannot read the token. Both checks run only once the check interval has
    passed, so a request in between does no more than before: one comparison.
    """

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._sync_lock = threading.Lock()
        self._async_locks: dict[int, asyncio.Lock] = {}

    def invalidate(self) -> None:
        self._snapshot = None

    def _fresh_enough(self, snap: Snapshot | None) -> bool:
        return (
            snap is not None
            and generation.monotonic() - snap.checked_at < settings.GATEWAY_SNAPSHOT_CHECK_SECONDS
        )

    def get(self) -> Snapshot:
        snap = self._snapshot
        if self._fresh_enough(snap):
            return snap  # type: ignore[return-value]
        with self._sync_lock:
            snap = self._snapshot
            now = generation.monotonic()
            if snap is not None and not snap.too_old(now):
                try:
                    unchanged = generation.current() == snap.generation
                except Exception:
                    logger.warning("config generation unreadable; keeping the snapshot")
                    unchanged = True
                if unchanged:
                    snap.checked_at = now
                    return snap
            self._snapshot = build_snapshot()
            return self._snapshot

    async def aget(self) -> Snapshot:
        snap = self._snapshot
        if self._fresh_enough(snap):
            return snap  # type: ignore[return-value]
        if snap is not None and not snap.too_old(generation.monotonic()):
            try:
                unchanged = await generation.acurrent() == snap.generation
            except Exception:
                # Redis unreachable: the configuration we hold is the best we know, until
                # it is too old (then it is rebuilt from the database all the same).
                logger.warning("config generation unreadable; keeping the snapshot", exc_info=True)
                unchanged = True
            if unchanged:
                snap.checked_at = generation.monotonic()
                return snap
        loop_id = id(asyncio.get_running_loop())
        lock = self._async_locks.setdefault(loop_id, asyncio.Lock())
        async with lock:
            # Another request may have rebuilt it while we waited for the lock.
            current = self._snapshot
            if current is not None and current is not snap and self._fresh_enough(current):
                return current
            try:
                self._snapshot = await off_loop(build_snapshot)
            except Exception:
                if current is None:
                    raise
                # Keep serving the last good configuration (the database may be away)
                # rather than fail every request; try again after the next interval.
                logger.exception("config snapshot rebuild failed; serving the previous one")
                current.checked_at = generation.monotonic()
                return current
            return self._snapshot


snapshots = SnapshotHolder()
