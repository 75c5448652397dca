"""Rate limits and budgets compiled for the proxy: which rules apply to a request.

`load_governance()` reads every enabled `RateLimit` and `Budget` (two queries) into a
`Governance` index, which the routing snapshot holds beside routes and tenants and
rebuilds with them. `billing/counters.py` counts requests against these rules in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

# Who a rate limit belongs to, in words: refusals name the kind of limit, never its id.
_LIMIT_OWNERS = {
    "key": "the API key's",
    "tenant": "the tenant's",
    "tenant-model": "the tenant's per-model",
    "route": "the route's",
    "global": "the gateway-wide",
}
_SUBJECT_COLUMN = {"tenant": "tenant_id", "key": "api_key_id", "route": "route_id"}


@dataclass(frozen=True)
class LimitRule:
    """One rate limit that applies to a request."""

    name: str  # e.g. "key:12", "tenant:3", "route:7", "tenant-model:3", "global:1"
    rpm: int | None
    tpm: int | None

    @property
    def owner(self) -> str:
        """Whose limit this is, in words for a client ("the API key's")."""
        return _LIMIT_OWNERS.get(self.name.split(":", 1)[0], "a")


@dataclass(frozen=True)
class BudgetRule:
    """One budget that applies to a request (`billing.services.BudgetSpec` is what an
    admin or the importer asks to store; this is the stored row, compiled)."""

    id: int
    scope: str
    subject_id: int
    period: str
    hard: bool
    max_tokens: int | None
    max_cost: Decimal | None
    thresholds: tuple[int, ...] = (50, 80, 100)


@dataclass(frozen=True)
class Governance:
    """Rate limits and budgets by what they apply to."""

    global_limits: tuple[LimitRule, ...] = ()
    tenant_limits: dict[int, tuple[LimitRule, ...]] = field(default_factory=dict)
    tenant_model_limits: dict[tuple[int, str], tuple[LimitRule, ...]] = field(default_factory=dict)
    key_limits: dict[int, tuple[LimitRule, ...]] = field(default_factory=dict)
    route_limits: dict[int, tuple[LimitRule, ...]] = field(default_factory=dict)
    tenant_budgets: dict[int, tuple[BudgetRule, ...]] = field(default_factory=dict)
    key_budgets: dict[int, tuple[BudgetRule, ...]] = field(default_factory=dict)
    route_budgets: dict[int, tuple[BudgetRule, ...]] = field(default_factory=dict)

    def limits_for(
        self, *, tenant_id: int, key_id: int, route_id: int, route_name: str
    ) -> list[LimitRule]:
        return [
            *self.key_limits.get(key_id, ()),
            *self.tenant_limits.get(tenant_id, ()),
            *self.tenant_model_limits.get((tenant_id, route_name), ()),
            *self.route_limits.get(route_id, ()),
            *self.global_limits,
        ]

    def budgets_for(self, *, tenant_id: int, key_id: int, route_id: int) -> list[BudgetRule]:
        return [
            *self.key_budgets.get(key_id, ()),
            *self.tenant_budgets.get(tenant_id, ()),
            *self.route_budgets.get(route_id, ()),
        ]


def _append(index: dict, subject: object, rule: object) -> None:
    index[subject] = (*index.get(subject, ()), rule)


def _load_limits(governance: Governance) -> tuple[LimitRule, ...]:
    """Fill the scoped limit indexes of `governance`; the gateway-wide limits are returned."""
    from billing.models import RateLimit

    scoped = {
        "tenant": governance.tenant_limits,
        "key": governance.key_limits,
        "route": governance.route_limits,
    }
    global_limits: list[LimitRule] = []
    rows = (
        RateLimit.objects.filter(enabled=True)
        .order_by("id")
        .values("id", "scope", "tenant_id", "api_key_id", "route_id", "model_name", "rpm", "tpm")
    )
    for row in rows:
        scope, rpm, tpm = row["scope"], row["rpm"], row["tpm"]
        if scope == "global":
            global_limits.append(LimitRule(f"global:{row['id']}", rpm, tpm))
        elif scope == "tenant" and row["model_name"]:
            rule = LimitRule(f"tenant-model:{row['id']}", rpm, tpm)
            _append(governance.tenant_model_limits, (row["tenant_id"], row["model_name"]), rule)
        else:
            rule = LimitRule(f"{scope}:{row['id']}", rpm, tpm)
            _append(scoped[scope], row[_SUBJECT_COLUMN[scope]], rule)  # type: ignore[literal-required]  # an id column
    return tuple(global_limits)


def _load_budgets(governance: Governance) -> None:
    """Fill the budget indexes of `governance` (a budget of another scope is ignored)."""
    from billing.models import Budget

    scoped = {
        "tenant": governance.tenant_budgets,
        "key": governance.key_budgets,
        "route": governance.route_budgets,
    }
    rows = (
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
    for row in rows:
        scope = row["scope"]
        if scope not in scoped:
            continue
        subject = row[_SUBJECT_COLUMN[scope]]  # type: ignore[literal-required]  # an id column
        rule = BudgetRule(
            id=row["id"],
            scope=scope,
            subject_id=subject,
            period=row["period"],
            hard=row["hard"],
            max_tokens=row["max_tokens"],
            max_cost=row["max_cost_usd"],
            thresholds=tuple(sorted(row["alert_thresholds"] or ())),
        )
        _append(scoped[scope], subject, rule)


def load_governance() -> Governance:
    """Every enabled rate limit and budget, indexed by what it applies to (two queries)."""
    partial = Governance()
    global_limits = _load_limits(partial)
    _load_budgets(partial)
    return Governance(
        global_limits=global_limits,
        tenant_limits=partial.tenant_limits,
        tenant_model_limits=partial.tenant_model_limits,
        key_limits=partial.key_limits,
        route_limits=partial.route_limits,
        tenant_budgets=partial.tenant_budgets,
        key_budgets=partial.key_budgets,
        route_budgets=partial.route_budgets,
    )
