"""The in-process configuration snapshot that keeps the proxy path free of the ORM.

Routes with their targets and prices, tenants and API keys (`tenants/snapshot.py`), rate
limits and budgets (`billing/rules.py`) and redaction rules are read from the database
once, compiled into plain immutable objects, and served from memory. A write anywhere in
the configuration sets a new cross-process generation (a random token, not a counter:
`gateway_project.lib.generation`); each process looks at that token at most once per
GATEWAY_SNAPSHOT_CHECK_SECONDS and rebuilds when it moved, and rebuilds any snapshot
older than GATEWAY_SNAPSHOT_MAX_AGE_SECONDS whatever the token says. So an admin change
(a revoked key, a suspended tenant, a new route) reaches every process within the check
interval while Redis answers, and within the maximum age whatever Redis does; a warm
request makes no database query at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, TypeGuard

import orjson
from django.conf import settings
from django.utils import timezone

from audit.redaction import CompiledRules, compiled_rules
from audit.row import RedactionRules
from billing.price_book import PriceBook, load_price_book
from billing.rules import Governance, load_governance
from gateway_project.lib import generation
from gateway_project.lib.db import off_loop
from providers.base import Target
from tenants.snapshot import KeyEntry, TenantSnapshot, load_tenant_snapshot

if TYPE_CHECKING:
    from audit.models import RedactionRule
    from providers.models import Provider, ProviderModel
    from routing.models import Route, RouteTarget

logger = logging.getLogger(__name__)


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
        return max((t.highest_prices[0] for t in self.targets), default=Decimal(0))

    @property
    def max_output_price(self) -> Decimal:
        return max((t.highest_prices[1] for t in self.targets), default=Decimal(0))


@dataclass
class Snapshot:
    """One process's view of the configuration, as of `generation` (the token it was built
    under, "unknown" when it could not be read)."""

    generation: str
    version: str  # hash of the routing configuration, stamped on every audit row
    tenancy: TenantSnapshot
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


def _target(rt: RouteTarget, pm: ProviderModel, provider: Provider, book: PriceBook) -> Target:
    current, later = book.prices_of(pm.id)
    return Target(
        provider_id=provider.id,
        provider_name=provider.name,
        kind=provider.kind,
        base_url=provider.base_url.rstrip("/"),
        api_key_env=provider.api_key_env,
        api_version=provider.api_version,
        model=pm.name,
        input_per_million=current.input_per_million if current else pm.input_per_million,
        output_per_million=current.output_per_million if current else pm.output_per_million,
        cached_input_per_million=current.cached_input_per_million if current else None,
        price_version_id=current.version_id if current else None,
        later_prices=later,
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


@dataclass
class _Routes:
    """The enabled routes, and what of them the configuration version hashes."""

    global_routes: dict[str, RouteEntry] = field(default_factory=dict)
    tenant_routes: dict[tuple[int, str], RouteEntry] = field(default_factory=dict)
    version_source: list = field(default_factory=list)


def _targets_by_route() -> dict[int, list[Target]]:
    from routing.models import RouteTarget

    targets: dict[int, list[Target]] = {}
    rows = list(
        RouteTarget.objects.filter(enabled=True, provider_model__provider__enabled=True)
        .select_related("provider_model__provider")
        .order_by("route_id", "position", "id")
    )
    book = load_price_book({rt.provider_model_id for rt in rows}, now=timezone.now())
    for rt in rows:
        pm = rt.provider_model
        targets.setdefault(rt.route_id, []).append(_target(rt, pm, pm.provider, book))
    return targets


def _route_entry(route: Route, targets: tuple[Target, ...]) -> RouteEntry:
    return RouteEntry(
        id=route.id,
        name=route.name,
        tenant_id=route.tenant_id,
        strategy=route.strategy,
        targets=targets,
        default_max_tokens=route.default_max_tokens,
        cache_ttl_seconds=route.cache_ttl_seconds,
        semantic_cache=route.semantic_cache,
        semantic_threshold=float(route.semantic_threshold),
        hedge_after_ms=route.hedge_after_ms,
    )


def _versioned(entry: RouteEntry) -> list:
    """What of a route changes the configuration version."""
    return [
        entry.tenant_id,
        entry.name,
        entry.strategy,
        [
            [
                t.provider_name,
                t.kind,
                t.base_url,
                t.model,
                str(t.input_per_million),
                str(t.output_per_million),
                t.price_version_id,
                [p.version_id for p in t.later_prices],
                t.weight,
                t.timeout_s,
            ]
            for t in entry.targets
        ],
    ]


def _load_routes() -> _Routes:
    from routing.models import Route

    targets = _targets_by_route()
    routes = _Routes()
    for route in Route.objects.filter(enabled=True).order_by("id"):
        entry = _route_entry(route, tuple(targets.get(route.id, ())))
        if route.tenant_id is None:
            routes.global_routes[route.name] = entry
        else:
            routes.tenant_routes[(route.tenant_id, route.name)] = entry
        routes.version_source.append(_versioned(entry))
    return routes


def _read_generation() -> str:
    # Read the generation first: a change landing while we read makes the next check rebuild.
    try:
        return generation.current()
    except Exception:
        # Redis away: build anyway; the next readable generation differs and rebuilds.
        logger.warning("config generation unreadable while building the snapshot")
        return "unknown"


def _enabled_rules() -> list[RedactionRule]:
    from audit.models import RedactionRule

    return list(RedactionRule.objects.filter(enabled=True).order_by("position", "id"))


def _version_of(routes: _Routes, rules: list[RedactionRule]) -> str:
    """The configuration version: what of the routes and rules changes how a request is
    routed or redacted, hashed. The snapshot and `routing_version` both call this."""
    version_source = [
        *routes.version_source,
        [[r.name, r.detector, r.pattern, r.replacement, r.scope] for r in rules],
    ]
    return hashlib.sha256(orjson.dumps(version_source)).hexdigest()[:16]


def routing_version() -> str:
    """The `version` a snapshot built from the database now would carry (what audit rows
    are stamped with as `config_version`); configuration versions record it."""
    return _version_of(_load_routes(), _enabled_rules())


def build_snapshot() -> Snapshot:
    """Read the whole configuration (a handful of queries, whatever its size)."""
    built_at = generation.monotonic()  # before any read: the age counts from the oldest
    gen = _read_generation()
    tenancy = load_tenant_snapshot(key_capacity=settings.GATEWAY_KEY_CACHE_SIZE)
    routes = _load_routes()
    rules = _enabled_rules()
    return Snapshot(
        generation=gen,
        version=_version_of(routes, rules),
        tenancy=tenancy,
        global_routes=routes.global_routes,
        tenant_routes=routes.tenant_routes,
        redaction=compiled_rules(RedactionRules.of(rules)),
        governance=load_governance(),
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

    @property
    def current(self) -> Snapshot | None:
        """The snapshot held now, as it is: no check, no I/O (for readers of names only,
        such as the metrics)."""
        return self._snapshot

    def _fresh_enough(self, snap: Snapshot | None) -> TypeGuard[Snapshot]:
        return (
            snap is not None
            and generation.monotonic() - snap.checked_at < settings.GATEWAY_SNAPSHOT_CHECK_SECONDS
        )

    def get(self) -> Snapshot:
        snap = self._snapshot
        if self._fresh_enough(snap):
            return snap
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
            return snap
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
