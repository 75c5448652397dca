"""The audit log's admin and the admin dashboard on a big table (target: under 0.5 s each).

    .venv/bin/python bench/audit_admin.py [--rows 5000000] [--tenants 50] [--days 30]
    make bench-audit

Not part of `make bench` (which measures the proxy). Needs Postgres at
BENCH_AUDIT_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/gw_bench_audit).
A database whose name contains "bench" is dropped and recreated; any other is only used
with --truncate, which empties its audit log, roll-ups and budgets first.

1. Migrate; make tenants (3 keys each), three global routes and a monthly budget per tenant.
2. Load the audit rows server-side with one INSERT ... SELECT over generate_series, spread
   evenly over the last `days` days up to now (secondary indexes dropped during the load and
   built again after it, as a bulk load does), with a realistic mix of statuses (94% 200,
   4% refusals, 1.7% 5xx, 0.3% cancelled), latencies, tokens and short prompt/response texts.
   Roll this month's rows up into billing's DailyUsage (the spend panel reads them), ANALYZE.
3. Time migration audit 0005 both ways on the loaded table (its indexes, CONCURRENTLY).
4. Through Django's test client logged in as a superuser (every dashboard panel): the audit
   changelist, searches by request id, key prefix, tenant + status, a time range, route +
   status, and the admin index (its figures computed, then from the cache). Each page is
   loaded once to warm up, then REPEAT times; the median and the slowest are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get(
    "BENCH_AUDIT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gw_bench_audit"
)
TARGET_SECONDS = 0.5
REPEAT = 5
TABLE = "audit_auditevent"

AUDIT_SQL = """
INSERT INTO audit_auditevent (
    request_id, created_at, tenant_id, tenant_slug, api_key_id, key_prefix, route_id, route,
    requested_model, provider, model, fallback_used, attempts, stream, outcome, status_code,
    error_type, error_message, latency_ms, ttft_ms, prompt_tokens, completion_tokens,
    total_tokens, cached_tokens, reasoning_tokens, cost_usd, price_version_id, prompt,
    response, attempt_log, metadata, config_version)
SELECT
    'req_' || md5(g::text),
    %(end)s::timestamptz - (%(rows)s - g) * %(step)s::interval,
    (%(tenant_ids)s::bigint[])[ti + 1],
    (%(tenant_slugs)s::text[])[ti + 1],
    (%(key_ids)s::bigint[])[ti * 3 + ki + 1],
    (%(key_prefixes)s::text[])[ti * 3 + ki + 1],
    (%(route_ids)s::bigint[])[ri + 1],
    (ARRAY['chat', 'batch', 'fast'])[ri + 1],
    (ARRAY['chat', 'batch', 'fast'])[ri + 1],
    'openai',
    (ARRAY['gpt-4o', 'gpt-4o-mini', 'o3'])[ri + 1],
    g %% 50 = 0,
    CASE WHEN g %% 50 = 0 THEN 2 ELSE 1 END,
    g %% 3 = 0,
    CASE WHEN k < 940 THEN 'success' WHEN k < 980 THEN 'rejected'
         WHEN k < 997 THEN 'upstream_error' ELSE 'cancelled' END,
    CASE WHEN k < 940 THEN 200 WHEN k < 970 THEN 429 WHEN k < 980 THEN 401
         WHEN k < 992 THEN 502 WHEN k < 997 THEN 504 ELSE 499 END,
    CASE WHEN k >= 980 AND k < 997 THEN 'upstream_error' ELSE '' END,
    CASE WHEN k >= 980 AND k < 997 THEN 'every target failed' ELSE '' END,
    CASE WHEN k >= 940 AND k < 980 THEN 1 ELSE 80 + (g * 7919) %% 1500 END,
    CASE WHEN g %% 3 = 0 AND k < 940 THEN 40 + (g * 31) %% 400 END,
    p, c, p + c, 0, 0,
    round((p * 2.5 + c * 10) / 1000000.0, 10),
    NULL,
    jsonb_build_array(jsonb_build_object('role', 'user', 'content',
        'Summarise ticket ' || g || ' for the weekly report, in three short bullet points.')),
    'Here are three bullet points about ticket ' || g || ': it was opened, triaged and closed.',
    '[]'::jsonb,
    '{}'::jsonb,
    'bench'
FROM (
    SELECT g, (g * 7) %% %(tenants)s AS ti, (g / 5) %% 3 AS ki, (g / 11) %% 3 AS ri,
           (g * 37) %% 1000 AS k, 50 + (g * 31) %% 2000 AS p, 10 + (g * 13) %% 800 AS c
    FROM generate_series(1, %(rows)s::bigint) AS g
) AS s
"""

# This month's rows as billing's roll-up would have them (per tenant, UTC day, key, route,
# model): the dashboard's spend panel reads the roll-ups, not the audit log.
ROLLUP_SQL = """
INSERT INTO billing_dailyusage (
    tenant_id, day, late, tenant_slug, api_key_id, key_prefix, route_id, route, provider,
    model, price_version_id, tags, requests, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, total_tokens, cost_usd, built_at)
SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date, false, tenant_slug, api_key_id,
    key_prefix, route_id, route, provider, model, 0, '', count(*), sum(prompt_tokens),
    sum(completion_tokens), 0, 0, sum(total_tokens), sum(cost_usd), now()
FROM audit_auditevent
WHERE outcome = 'success' AND created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY 1, 2, 4, 5, 6, 7, 8, 9, 10
"""


def log(message: str) -> None:
    print(message, flush=True)


def prepare_database(truncate: bool) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    if "bench" in name:
        admin = parts._replace(path="/postgres").geturl()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    elif not truncate:
        raise SystemExit(
            f"refusing to use {name!r}: name a database containing 'bench' (dropped and "
            "recreated), or pass --truncate to empty this one's audit log, roll-ups and budgets"
        )


def setup_django() -> None:
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ.pop("REDIS_URL", None)  # budgets and circuits on the in-process Redis
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("GATEWAY_STATE_DIR", tempfile.mkdtemp(prefix="audit-bench-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()


def seed(rows: int, tenants: int, days: int, truncate: bool) -> dict:
    from datetime import timedelta
    from decimal import Decimal

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from audit.models import AuditEvent
    from billing.models import Budget
    from providers.models import Provider, ProviderModel
    from routing.models import Route, RouteTarget
    from tenants.models import Tenant
    from tenants.services import api_key_issue

    call_command("migrate", verbosity=0)
    if truncate:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {TABLE}, billing_dailyusage, billing_budget CASCADE")
    made = []
    for index in range(tenants):
        tenant, _ = Tenant.objects.get_or_create(
            slug=f"bench-{index}", defaults={"name": f"Bench {index}"}
        )
        made.append(tenant)
    keys = []
    for tenant in made:
        have = list(tenant.api_keys.order_by("id")[:3])
        while len(have) < 3:
            have.append(api_key_issue(tenant=tenant, name=f"bench {len(have)}").api_key)
        keys += have
    provider, _ = Provider.objects.get_or_create(name="openai", defaults={"kind": "stub"})
    routes = []
    for name, model_name in (("chat", "gpt-4o"), ("batch", "gpt-4o-mini"), ("fast", "o3")):
        model, _ = ProviderModel.objects.get_or_create(provider=provider, name=model_name)
        route, created = Route.objects.get_or_create(name=name, tenant=None)
        if created:
            RouteTarget.objects.create(route=route, provider_model=model, position=0)
        routes.append(route)
    for tenant in made:
        Budget.objects.create(scope="tenant", tenant=tenant, max_cost_usd=Decimal(500))

    end = timezone.now()
    step = timedelta(days=days) / rows
    parameters = {
        "end": end,
        "rows": rows,
        "step": timedelta(microseconds=max(int(step / timedelta(microseconds=1)), 1)),
        "tenant_ids": [t.id for t in made],
        "tenant_slugs": [t.slug for t in made],
        "key_ids": [k.id for k in keys],
        "key_prefixes": [k.prefix for k in keys],
        "route_ids": [r.id for r in routes],
        "tenants": tenants,
    }
    with connection.cursor() as cursor:
        # The indexes the model declares (its fields' and Meta's), from Django itself: they
        # are dropped for the load and built again after it, even when the load fails.
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE %s",
            [TABLE, "%_pkey"],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
        with connection.schema_editor() as editor:
            indexes = [str(statement) for statement in editor._model_indexes_sql(AuditEvent)]
        began = time.perf_counter()
        try:
            cursor.execute(AUDIT_SQL, parameters)
            log(f"audit rows: {rows:,} in {time.perf_counter() - began:.1f} s")
        finally:
            began = time.perf_counter()
            for statement in indexes:
                cursor.execute(statement)
            log(f"{len(indexes)} secondary indexes built in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        cursor.execute(ROLLUP_SQL)
        log(f"roll-ups: {cursor.rowcount:,} DailyUsage rows in {time.perf_counter() - began:.1f} s")
    with connection.cursor() as cursor:
        # What autovacuum would have done to a table this old: statistics for the planner,
        # and the visibility map that lets index-only scans skip the rows.
        began = time.perf_counter()
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
        cursor.execute("VACUUM ANALYZE billing_dailyusage")
        log(f"VACUUM ANALYZE in {time.perf_counter() - began:.1f} s")
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", [TABLE])
        log(f"{TABLE}: {cursor.fetchone()[0]} with its indexes")
        cursor.execute(
            f"SELECT request_id FROM {TABLE} WHERE created_at < %s ORDER BY created_at DESC "
            "LIMIT 1",
            [end - timedelta(days=days / 2)],
        )
        middle_request = cursor.fetchone()[0]
    return {
        "request_id": middle_request,
        "key_prefix": keys[len(keys) // 2].prefix,
        "tenant": made[len(made) // 2].slug,
        "end": end,
    }


def loaded_sample() -> dict:
    """What the searches look for, from a database an earlier run loaded."""
    from django.db import connection

    from tenants.models import ApiKey

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT max(created_at), min(created_at), count(*) FROM {TABLE}")
        end, start, _ = cursor.fetchone()
        cursor.execute(
            f"SELECT request_id FROM {TABLE} WHERE created_at < %s ORDER BY created_at DESC "
            "LIMIT 1",
            [start + (end - start) / 2],
        )
        request_id = cursor.fetchone()[0]
    keys = list(ApiKey.objects.filter(tenant__slug__startswith="bench-").order_by("id"))
    return {
        "request_id": request_id,
        "key_prefix": keys[len(keys) // 2].prefix,
        "tenant": keys[len(keys) // 2].tenant.slug,
        "end": end,
    }


def time_migration() -> list[tuple[str, float]]:
    from django.core.management import call_command

    timings = []
    for target, label in (
        ("0004", "back: drop its three indexes, build created_at's own again"),
        ("0005", "forward: build the three, drop created_at's own"),
    ):
        began = time.perf_counter()
        call_command("migrate", "audit", target, verbosity=0)
        timings.append(
            (f"migrate audit {target} ({label}, CONCURRENTLY)", time.perf_counter() - began)
        )
    return timings


def timed(client, url: str, params: dict[str, str]) -> tuple[float, list[float], int]:
    """(first load, the next REPEAT loads, status) of one page."""
    began = time.perf_counter()
    response = client.get(url, params)
    first = time.perf_counter() - began
    if response.status_code != 200:
        return first, [first], response.status_code
    seconds = []
    for _ in range(REPEAT):
        began = time.perf_counter()
        client.get(url, params)
        seconds.append(time.perf_counter() - began)
    return first, seconds, response.status_code


def time_pages(sample: dict) -> list[tuple[str, float, float, float, int]]:
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client
    from django.urls import reverse

    settings.ALLOWED_HOSTS = ["*"]
    user = get_user_model().objects.filter(username="bench").first()
    if user is None:
        user = get_user_model().objects.create_superuser("bench", password="bench-only")
    client = Client()
    client.force_login(user)
    changelist = reverse("admin:audit_auditevent_changelist")
    day = (sample["end"] - timedelta(days=2)).strftime("%Y-%m-%d %H:%M")
    next_day = (sample["end"] - timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    cases = [
        ("audit changelist", changelist, {}),
        ("search: request id", changelist, {"q": sample["request_id"]}),
        ("search: key prefix", changelist, {"q": sample["key_prefix"]}),
        ("search: tenant + status 5xx", changelist, {"tenant": sample["tenant"], "status": "5xx"}),
        ("search: tenant + status 429", changelist, {"tenant": sample["tenant"], "status": "429"}),
        ("search: time range (one day)", changelist, {"since": day, "until": next_day}),
        ("search: route + status 502", changelist, {"route": "batch", "status": "502"}),
        ("search: tenant, page 50", changelist, {"tenant": sample["tenant"], "p": "50"}),
    ]
    results = []
    for label, url, params in cases:
        first, seconds, status = timed(client, url, params)
        results.append((label, first, statistics.median(seconds), max(seconds), status))
    settings.DASHBOARD_CACHE_SECONDS = 0
    first, seconds, status = timed(client, reverse("admin:index"), {})
    results.append(
        ("dashboard (computed)", first, statistics.median(seconds), max(seconds), status)
    )
    settings.DASHBOARD_CACHE_SECONDS = 30
    cache.clear()
    first, seconds, status = timed(client, reverse("admin:index"), {})
    results.append(("dashboard (cached)", first, statistics.median(seconds), max(seconds), status))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--truncate", action="store_true")
    parser.add_argument(
        "--time-only", action="store_true", help="time the pages of a database loaded before"
    )
    args = parser.parse_args()

    if args.time_only:
        setup_django()
        sample = loaded_sample()
    else:
        prepare_database(args.truncate)
        setup_django()
        sample = seed(args.rows, args.tenants, args.days, args.truncate)
        for label, seconds in time_migration():
            log(f"{label}: {seconds:.1f} s")
    results = time_pages(sample)
    log("")
    log(f"| page ({args.rows:,} audit rows) | first | median of {REPEAT} | slowest | status |")
    log("|---|---:|---:|---:|---|")
    failed = False
    for label, first, median, slowest, status in results:
        ok = status == 200 and median < TARGET_SECONDS
        failed |= not ok
        log(
            f"| {label} | {first * 1000:.0f} ms | {median * 1000:.0f} ms | "
            f"{slowest * 1000:.0f} ms | {status}{'' if ok else ' OVER TARGET'} |"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
