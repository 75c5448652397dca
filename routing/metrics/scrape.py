"""What is read when Prometheus scrapes, and the exposition itself.

Counters come from the files every worker writes (prometheus-client's multiprocess
collector). Beside them, a few figures are read at scrape time, never per request, each in
one bounded step:

- the circuit state of every target in the configuration (one Redis call for all);
- the remaining budget of each budget with a live counter this period (one pipelined
  round trip, at most GATEWAY_METRICS_MAX_BUDGETS budgets);
- the audit spool and dead letters (a directory listing and a file's line count, which
  every worker on this machine shares).

Each step has PART_TIMEOUT_SECONDS; a step that fails or times out is left out and says
so in `gateway_metrics_collector_up`, and the rest of the scrape is still answered.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, TypeVar

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from audit.selectors import AuditBacklog, audit_backlog
from billing.selectors import BudgetStanding, budget_standings
from gateway_project.lib import metrics_dir
from providers.base import Target
from providers.circuit import breaker
from routing.metrics import instruments, sampler
from routing.snapshot import Snapshot, snapshots

logger = logging.getLogger(__name__)

PART_TIMEOUT_SECONDS = 2.0
CIRCUIT_STATES = ("closed", "open", "half_open")
T = TypeVar("T")


@dataclass
class Scraped:
    """What this scrape read besides the counters (None: that part could not be read)."""

    targets: list[Target] = field(default_factory=list)
    circuits: dict[str, str] | None = None  # target key -> state
    budgets: list[BudgetStanding] | None = None
    budgets_left_out: int = 0
    budget_subjects: dict[tuple[str, int], str] = field(default_factory=dict)
    backlog: AuditBacklog | None = None
    up: dict[str, bool] = field(default_factory=dict)


async def _part(name: str, scraped: Scraped, work: Awaitable[T]) -> T | None:
    try:
        result = await asyncio.wait_for(work, PART_TIMEOUT_SECONDS)
    except Exception as exc:
        logger.warning("metrics: could not read the %s: %r", name, exc)
        scraped.up[name] = False
        return None
    scraped.up[name] = True
    return result


def _targets(snap: Snapshot) -> list[Target]:
    unique: dict[str, Target] = {}
    for route in chain(snap.global_routes.values(), snap.tenant_routes.values()):
        for target in route.targets:
            unique.setdefault(target.key, target)
    return list(unique.values())


def _budget_subjects(snap: Snapshot) -> dict[tuple[str, int], str]:
    """Who each budget is for, by name: tenant slugs and route names (keys by id)."""
    subjects = {("tenant", t.id): t.slug for t in snap.tenancy.tenants.values()}
    for route in chain(snap.global_routes.values(), snap.tenant_routes.values()):
        subjects[("route", route.id)] = route.name
    return subjects


async def _circuits(targets: list[Target]) -> dict[str, str]:
    if not targets:
        return {}
    return {state.key: state.state for state in await breaker.states([t.key for t in targets])}


async def gather() -> Scraped:
    """Read the scrape-time figures (bounded: see the module's docstring)."""
    sampler.ensure_started()
    scraped = Scraped()
    snap = await _part("configuration", scraped, snapshots.aget())
    if snap is not None:
        scraped.targets = _targets(snap)
        scraped.circuits = await _part("circuits", scraped, _circuits(scraped.targets))
        governance = snap.governance
        rules = list(
            chain.from_iterable(
                chain(
                    governance.tenant_budgets.values(),
                    governance.key_budgets.values(),
                    governance.route_budgets.values(),
                )
            )
        )
        limit = settings.GATEWAY_METRICS_MAX_BUDGETS
        scraped.budgets_left_out = max(len(rules) - limit, 0)
        scraped.budget_subjects = _budget_subjects(snap)
        scraped.budgets = await _part("budgets", scraped, budget_standings(budgets=rules[:limit]))
    scraped.backlog = await _part("audit", scraped, asyncio.to_thread(audit_backlog))
    return scraped


class ScrapeCollector(Collector):
    """Yields what `gather()` read, as gauges."""

    def __init__(self, scraped: Scraped) -> None:
        self.scraped = scraped

    def collect(self) -> Iterator[Metric]:
        scraped = self.scraped
        up = GaugeMetricFamily(
            "gateway_metrics_collector_up",
            "Whether this scrape could read each of its parts (0: left out, see the log).",
            labels=["collector"],
        )
        for name, ok in sorted(scraped.up.items()):
            up.add_metric([name], 1 if ok else 0)
        yield up
        if scraped.circuits is not None:
            yield self._circuits(scraped.targets, scraped.circuits)
        if scraped.budgets is not None:
            yield from self._budgets(scraped)
        if scraped.backlog is not None:
            yield GaugeMetricFamily(
                "gateway_audit_spooled_rows",
                "Audit rows in spool files on this machine, waiting for the database.",
                value=scraped.backlog.spooled,
            )
            yield GaugeMetricFamily(
                "gateway_audit_dead_letters",
                "Audit rows the database refused (manage.py audit_replay_dead_letters).",
                value=scraped.backlog.dead_letters,
            )

    @staticmethod
    def _circuits(targets: list[Target], circuits: dict[str, str]) -> Metric:
        family = GaugeMetricFamily(
            "gateway_circuit_state",
            "Circuit breaker state of each target: 1 for its current state (closed, open, "
            "half_open), 0 for the others.",
            labels=["provider", "model", "state"],
        )
        for target in sorted(targets, key=lambda t: t.key):
            current = circuits.get(target.key, "closed")
            for state in CIRCUIT_STATES:
                family.add_metric(
                    [target.provider_name, target.model, state], 1.0 if current == state else 0.0
                )
        return family

    @staticmethod
    def _budgets(scraped: Scraped) -> Iterator[Metric]:
        labels = ["budget", "scope", "subject", "period"]
        cost = GaugeMetricFamily(
            "gateway_budget_remaining_usd",
            "What is left of a budget's cost limit in its current period (live counter).",
            labels=labels,
        )
        tokens = GaugeMetricFamily(
            "gateway_budget_remaining_tokens",
            "What is left of a budget's token limit in its current period (live counter).",
            labels=labels,
        )
        for standing in scraped.budgets or ():
            budget = standing.budget
            subject = scraped.budget_subjects.get(
                (budget.scope, budget.subject_id), f"{budget.scope} {budget.subject_id}"
            )
            values = [str(budget.id), budget.scope, subject, budget.period]
            if standing.remaining_cost is not None:
                cost.add_metric(values, float(standing.remaining_cost))
            if standing.remaining_tokens is not None:
                tokens.add_metric(values, standing.remaining_tokens)
        yield cost
        yield tokens
        yield GaugeMetricFamily(
            "gateway_budgets_left_out",
            "Budgets over GATEWAY_METRICS_MAX_BUDGETS, not read by this scrape.",
            value=scraped.budgets_left_out,
        )


class _ThisProcess(Collector):
    """The metrics of this process only (prometheus_client was imported too early)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(scraped: Scraped, accept: str) -> tuple[bytes, str]:
    """The scrape's body and content type (Prometheus' text format, or OpenMetrics when
    asked for). Reads the workers' files: call it off the event loop."""
    registry = CollectorRegistry(auto_describe=False)
    collector: Any
    if instruments.MULTIPROCESS:
        collector = MultiProcessCollector(None, path=os.environ[metrics_dir.ENV])
    else:
        collector = _ThisProcess()
    registry.register(collector)
    registry.register(ScrapeCollector(scraped))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
