"""What a configuration version costs a change, on a configuration of realistic size.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/h_versions_bench \\
        .venv/bin/python bench/config_versions.py [--tenants 200] [--routes 400]

Postgres, on a database of its own: the script creates it when missing, migrates it, and
seeds (once) providers with models, tenants with a budget and a rate limit each, keys with
settings, routes with two targets each, through the services in one transaction. Then it
times, as medians over --repeat runs: the export a version stores, the recorder as a
change's commit runs it, one route change committed with its version, a version's YAML
rendered, the admin's diff of two versions, and a rollback (its dry run, which the confirmation page makes, and the real
one). Not on the proxy's path: a request never records, reads nor waits for a version.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{name}"')


def seed(tenant_count: int, route_count: int) -> None:
    from decimal import Decimal

    from django.db import transaction

    from billing.services import (
        BudgetSpec,
        RateLimitSpec,
        Subject,
        budgets_replace,
        rate_limits_replace,
    )
    from providers.services import provider_model_upsert, provider_upsert
    from routing.services import TargetSpec, route_upsert
    from tenants.services import api_key_configure, api_key_issue, tenant_upsert

    with transaction.atomic():
        models = []
        for p in range(10):
            provider = provider_upsert(name=f"provider-{p}", kind="stub").instance
            for m in range(10):
                models.append(
                    provider_model_upsert(
                        provider=provider,
                        name=f"model-{m}",
                        input_per_million=Decimal(m + 1),
                        output_per_million=Decimal(2 * m + 2),
                    ).instance
                )
        tenants = []
        for t in range(tenant_count):
            tenant = tenant_upsert(slug=f"tenant-{t:03d}", name=f"Tenant {t}").instance
            tenants.append(tenant)
            subject = Subject.of(tenant)
            budgets_replace(subject=subject, budgets=[BudgetSpec(max_cost_usd=Decimal(100))])
            rate_limits_replace(subject=subject, rate_limits=[RateLimitSpec(rpm=600)])
            if t % 2 == 0:  # every other tenant: a key with settings
                api_key = api_key_issue(tenant=tenant, name="ci").api_key
                api_key_configure(api_key=api_key, max_output_tokens=2_000)
        for r in range(route_count):
            owner = tenants[r % len(tenants)] if r % 2 else None
            targets = [TargetSpec(models[r % 100]), TargetSpec(models[(r + 37) % 100])]
            route_upsert(name=f"route-{r:03d}", tenant=owner, targets=targets)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--routes", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("Set DATABASE_URL to a Postgres database of the bench's own.", file=sys.stderr)
        return 2
    ensure_database(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from routing.config_io import config_dump, config_export
    from routing.models import ConfigVersion, Route
    from routing.services import route_update
    from routing.versions.diff import text_diff
    from routing.versions.selectors import config_version_document
    from routing.versions.services import config_version_record, config_version_rollback

    call_command("migrate", "--noinput", verbosity=0)
    if not Route.objects.filter(name__startswith="route-").exists():
        started = time.perf_counter()
        seed(args.tenants, args.routes)
        print(f"seeded in {time.perf_counter() - started:.1f} s")
    document = config_dump(config_export())
    print(
        f"configuration: {Route.objects.count()} routes; document "
        f"{len(document.splitlines()):,} lines, {len(document.encode()) / 1024:.0f} KiB"
    )
    route = Route.objects.get(name="route-000")
    target = ConfigVersion.objects.order_by("-id").first()
    flip = iter(range(10**6))

    def change() -> None:
        with transaction.atomic():  # an admin save: the version is recorded at its commit
            route_update(route=route, description=f"bench {next(flip)}")

    figures = {
        "export (the data a version stores)": median_ms(config_export, args.repeat),
        "config_version_record (after a commit)": median_ms(
            lambda: config_version_record(labels={"tenants.ApiKey"}), args.repeat
        ),
        "one route change committed, its version included": median_ms(change, args.repeat),
    }
    latest = ConfigVersion.objects.order_by("-id").first()
    figures["a version's YAML rendered (its page, its download)"] = median_ms(
        lambda: config_version_document(version=latest), args.repeat
    )
    figures["the diff page: two versions rendered and compared"] = median_ms(
        lambda: text_diff(
            config_version_document(version=target), config_version_document(version=latest)
        ),
        args.repeat,
    )
    figures["rollback dry run (the confirmation page)"] = median_ms(
        lambda: config_version_rollback(version=target, dry_run=True), args.repeat
    )
    started = time.perf_counter()
    config_version_rollback(version=target)
    figures["rollback, committed and recorded"] = (time.perf_counter() - started) * 1000
    for name, ms in figures.items():
        print(f"{name}: {ms:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
