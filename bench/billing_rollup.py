"""One billing day's roll-up of 1,000,000 ledger lines (issue 13's target: under 60 s).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/h_rollups_bench \\
        .venv/bin/python bench/billing_rollup.py [--lines 1000000] [--tenants 20]

Postgres only, on a database of its own: the script creates it when missing, migrates it,
and empties its ledger and roll-ups first. The lines are made server-side by one
INSERT ... SELECT over generate_series, all on one UTC day, spread over the tenants, 10
keys each, 5 routes, 4 models and 22 tag sets (one line in ten without tags). Then
billing.rollups.rollup_day runs for every tenant's day, and the seconds it took are
printed, with the rows written and a check that they count every line; then the same by
rollup_pending, as the beat task would (finding the days from the ledger first).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = date(2025, 6, 15)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet", "claude-haiku")


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{name}"')


def seed(lines: int, tenant_count: int) -> None:
    from django.db import connection

    from billing.models import DailyUsage, RollupCursor, UsageLine
    from tenants.models import Tenant

    tenants = []
    for n in range(tenant_count):
        tenant, _ = Tenant.objects.get_or_create(
            slug=f"bench-rollup-{n:02d}", defaults={"name": f"Rollup bench {n}"}
        )
        tenants.append(tenant.id)
    with connection.cursor() as cursor:
        for model in (UsageLine, DailyUsage, RollupCursor):
            cursor.execute(f"TRUNCATE {model._meta.db_table}")
        cursor.execute(
            f"""
            INSERT INTO {UsageLine._meta.db_table} (
              request_id, created_at, tenant_id, tenant_slug, api_key_id, key_prefix,
              route_id, route, provider, model, price_version_id, prompt_tokens,
              completion_tokens, cached_tokens, reasoning_tokens, total_tokens, cost_usd,
              metadata, stream, outcome)
            SELECT 'bench_' || i,
                   %(day)s::timestamptz + (i * interval '86399 milliseconds' / %(lines)s),
                   (%(tenants)s::bigint[])[1 + i %% %(count)s],
                   'bench-rollup-' || lpad((i %% %(count)s)::text, 2, '0'),
                   1 + (i %% %(count)s) * 10 + (i / 20) %% 10,
                   'gw_' || (i %% %(count)s) || '_' || ((i / 20) %% 10),
                   1 + (i / 4000) %% 5, 'route-' || ((i / 4000) %% 5),
                   CASE WHEN (i / 7) %% 4 < 2 THEN 'openai' ELSE 'anthropic' END,
                   (%(models)s::text[])[1 + (i / 7) %% 4], 1 + (i / 7) %% 4,
                   100 + i %% 900, 50 + i %% 400, i %% 50, i %% 20,
                   150 + i %% 900 + i %% 400, (i %% 1000) * 0.0000001234,
                   CASE WHEN (i / 13) %% 10 = 0 THEN '{{}}'::jsonb
                        ELSE jsonb_build_object('tags', jsonb_build_object(
                          'team', 'team-' || ((i / 3) %% 7), 'feature', 'f' || ((i / 11) %% 3)))
                   END,
                   i %% 3 = 0, 'success'
            FROM generate_series(0, %(last)s) AS i
            """,
            {
                "day": DAY.isoformat(),
                "lines": lines,
                "tenants": tenants,
                "count": tenant_count,
                "models": list(MODELS),
                "last": lines - 1,
            },
        )
        cursor.execute(f"ANALYZE {UsageLine._meta.db_table}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=20)
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
    from django.db.models import Sum

    from billing.models import DailyUsage
    from billing.rollups import rollup_day, rollup_pending
    from tenants.models import Tenant

    call_command("migrate", "--noinput", verbosity=0)
    started = time.perf_counter()
    seed(args.lines, args.tenants)
    seeded = time.perf_counter() - started
    tenant_ids = Tenant.objects.filter(slug__startswith="bench-rollup-").values_list(
        "id", flat=True
    )
    started = time.perf_counter()
    rows = sum(rollup_day(tenant_id=tenant_id, day=DAY) for tenant_id in tenant_ids)
    elapsed = time.perf_counter() - started
    counted = DailyUsage.objects.filter(day=DAY).aggregate(n=Sum("requests"))["n"]
    print(f"seeded {args.lines:,} ledger lines for {DAY} in {seeded:.1f} s")
    print(
        f"rollup_day for {len(tenant_ids)} tenants: {elapsed:.2f} s, {rows:,} rows, "
        f"{counted:,} requests counted"
    )
    # The same day found and rebuilt by the beat task's path: the ledger read by id range
    # for its (tenant, day) pairs, then the same rebuilds.
    started = time.perf_counter()
    pending = rollup_pending()
    elapsed = time.perf_counter() - started
    print(f"rollup_pending over them: {elapsed:.2f} s, {pending.days} tenant days")
    return 0 if counted == args.lines else 1


if __name__ == "__main__":
    raise SystemExit(main())
