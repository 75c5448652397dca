"""Billing reports at scale: a monthly usage report over a million ledger lines (target:
under 2 s) and the full CSV export of those lines (target: under 100 MB of peak memory).

    .venv/bin/python bench/billing_report.py [--lines 1000000] [--tenants 6] [--xlsx]

Not part of `make bench` (which measures the proxy). Needs Postgres at
BENCH_REPORT_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/h_reports_bench);
**the run drops and recreates that database** (it refuses a name without "bench").

1. Migrate, then make the lines server-side with one INSERT ... SELECT over
   generate_series: one March, several tenants (some billing in Europe/Rome and
   America/New_York), 20 keys each, 3 routes, 4 models, 6 tag sets (one of them none).
2. Roll them up per tenant-local day x key x route x model x price version x tag set
   with one GROUP BY INSERT ... SELECT of its own (what billing.rollups builds; this
   measures the reports, not the roll-up).
3. Time usage_report for the month: every grouping, all tenants and one; check that the
   total equals the ledger's sum for the month in each tenant's zone, to the digit.
4. Export every line of the month as CSV (billing.exports.ledger_lines_csv, to a file) in
   a fresh child process, and report its peak resident memory during the export minus
   its resident memory before (Linux: VmHWM after resetting it, VmRSS).
   With --xlsx, the same for ledger_lines_xlsx.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get(
    "BENCH_REPORT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/h_reports_bench"
)
MONTH = "2027-03"
ZONES = ("UTC", "Europe/Rome", "America/New_York")
TARGET_REPORT_SECONDS = 2.0
TARGET_EXPORT_MB = 100.0

LEDGER_SQL = """
INSERT INTO billing_usageline (
    request_id, created_at, tenant_id, tenant_slug, api_key_id, key_prefix, route_id, route,
    provider, model, price_version_id, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, total_tokens, cost_usd, metadata, stream, outcome)
SELECT
    'bench-' || g,
    %(start)s::timestamptz + (g - 1) * %(step)s::interval,
    (%(tenant_ids)s::bigint[])[ti + 1],
    (%(tenant_slugs)s::text[])[ti + 1],
    ti * 100 + ki,
    'gwk_b' || lpad(ti::text, 2, '0') || lpad(ki::text, 3, '0'),
    ri + 1,
    'route-' || ri,
    'openai',
    (ARRAY['gpt-4o', 'gpt-4o-mini', 'o3', 'gpt-4.1'])[mi + 1],
    mi + 1,
    p, c, cached, c / 5, p + c,
    round(((p - cached) * 2.5 + cached * 1.25 + c * 10) / 1000000.0, 10),
    CASE WHEN si = 0 THEN '{}'::jsonb ELSE jsonb_build_object('tags', jsonb_build_object(
        'team', 'team-' || (si %% 3), 'env', CASE WHEN si > 3 THEN 'prod' ELSE 'dev' END)) END,
    g %% 7 = 0,
    'success'
FROM (
    SELECT g, g %% %(tenants)s AS ti, (g / %(tenants)s) %% 20 AS ki, (g / 7) %% 3 AS ri,
           (g / 3) %% 4 AS mi, (g / 11) %% 6 AS si,
           50 + (g * 31) %% 2000 AS p, 10 + (g * 37) %% 800 AS c, (g * 41) %% 40 AS cached
    FROM generate_series(1, %(lines)s) AS g
) AS s
"""

ROLLUP_SQL = """
INSERT INTO billing_dailyusage (
    tenant_id, day, late, tenant_slug, api_key_id, key_prefix, route_id, route, provider,
    model, price_version_id, tags, requests, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, total_tokens, cost_usd, built_at)
SELECT l.tenant_id, (l.created_at AT TIME ZONE COALESCE(t.time_zone, 'UTC'))::date, false,
    l.tenant_slug, l.api_key_id, l.key_prefix, l.route_id, l.route, l.provider, l.model,
    l.price_version_id, COALESCE((l.metadata -> 'tags')::text, ''), count(*),
    sum(l.prompt_tokens), sum(l.completion_tokens), sum(l.cached_tokens),
    sum(l.reasoning_tokens), sum(l.total_tokens), sum(l.cost_usd), now()
FROM billing_usageline AS l LEFT JOIN billing_tenantterms AS t ON t.tenant_id = l.tenant_id
GROUP BY 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12
"""

# The ledger's own sum for the month: each tenant's lines in its own zone's March.
LEDGER_TOTAL_SQL = """
SELECT sum(l.cost_usd) FROM billing_usageline AS l
LEFT JOIN billing_tenantterms AS t ON t.tenant_id = l.tenant_id
WHERE to_char(l.created_at AT TIME ZONE COALESCE(t.time_zone, 'UTC'), 'YYYY-MM') = %s
"""


def log(message: str) -> None:
    print(message, flush=True)


def recreate_database() -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to drop {name!r}: the database name must contain 'bench'")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django() -> None:
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("GATEWAY_STATE_DIR", tempfile.mkdtemp(prefix="billing-bench-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()


def seed(lines: int, tenants: int) -> None:
    from datetime import timedelta

    from django.core.management import call_command
    from django.db import connection

    from billing.models import TenantTerms
    from billing.periods import billing_month_bounds
    from tenants.models import Tenant

    call_command("migrate", verbosity=0)
    made = [Tenant.objects.create(slug=f"bench-{i}", name=f"Bench {i}") for i in range(tenants)]
    for index, tenant in enumerate(made):
        zone = ZONES[index % len(ZONES)]
        if zone != "UTC":
            TenantTerms.objects.create(tenant=tenant, time_zone=zone)
    start, end = billing_month_bounds(month=MONTH, time_zone="UTC")
    step = (end - start) / lines
    parameters = {
        "start": start,
        "step": timedelta(microseconds=int(step / timedelta(microseconds=1))),
        "tenant_ids": [t.id for t in made],
        "tenant_slugs": [t.slug for t in made],
        "tenants": tenants,
        "lines": lines,
    }
    with connection.cursor() as cursor:
        began = time.perf_counter()
        cursor.execute(LEDGER_SQL, parameters)
        log(f"ledger: {lines:,} lines in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        cursor.execute(ROLLUP_SQL)
        log(
            f"roll-up (the bench's own GROUP BY): {cursor.rowcount:,} daily rows "
            f"in {time.perf_counter() - began:.1f} s"
        )
        cursor.execute("ANALYZE billing_usageline; ANALYZE billing_dailyusage")


def time_reports() -> float:
    from decimal import Decimal

    from django.db import connection

    from billing.reports import parse_report_query, usage_report

    with connection.cursor() as cursor:
        cursor.execute(LEDGER_TOTAL_SQL, [MONTH])
        ledger_total: Decimal = cursor.fetchone()[0]
    cases = [{"group_by": g} for g in ("model", "route", "key", "tag", "day", "tenant")]
    cases += [{"group_by": "tag", "tag_key": "team"}, {"group_by": "key", "tenant": "bench-1"}]
    slowest = 0.0
    for case in cases:
        query = parse_report_query({"month": MONTH, **case})
        began = time.perf_counter()
        report = usage_report(query)
        seconds = time.perf_counter() - began
        slowest = max(slowest, seconds)
        check = ""
        if "tenant" not in case:
            check = "total = ledger" if report.total.cost == ledger_total else "TOTAL DIFFERS"
        label = ", ".join(f"{k}={v}" for k, v in case.items())
        log(
            f"usage_report({label}): {seconds * 1000:7.1f} ms, {len(report.rows):4} rows, "
            f"{report.total.requests:,} requests, ${report.total.cost} {check}"
        )
    return slowest


def _status_kb(field: str) -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(f"{field}:"):
            return int(row.split()[1])
    raise LookupError(field)


def measure_export(kind: str) -> dict:
    """Run in a child process (`--export csv|xlsx`): its resident memory before the export
    and at its peak during it. The kernel's peak (VmHWM) is reset to the current size first
    (/proc/self/clear_refs), so what Django's start-up touched does not hide the export's."""
    from billing import exports
    from billing.reports import parse_report_query

    query = parse_report_query({"month": MONTH})
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"lines.{kind}"
        if kind == "xlsx":
            rows = exports.ledger_lines_xlsx(query, path)
        else:
            rows = 0
            with path.open("w", encoding="utf-8", newline="") as file:
                for chunk in exports.ledger_lines_csv(query):
                    file.write(chunk)
                    rows += chunk.count("\n")
            rows -= 1  # the header
        size = path.stat().st_size
    seconds = time.perf_counter() - began
    return {
        "rows": rows,
        "seconds": seconds,
        "bytes": size,
        "rss_before_kb": before,
        "rss_peak_kb": _status_kb("VmHWM"),
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def export_in_child(kind: str) -> float:
    env = {**os.environ, "BENCH_REPORT_DATABASE_URL": DATABASE_URL}
    output = subprocess.run(
        [sys.executable, __file__, "--export", kind],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    growth_mb = (result["rss_peak_kb"] - result["rss_before_kb"]) / 1024
    log(
        f"{kind} export: {result['rows']:,} lines, {result['bytes'] / 1e6:.0f} MB written in "
        f"{result['seconds']:.1f} s ({result['rows'] / result['seconds']:,.0f} lines/s); "
        f"RSS {result['rss_before_kb'] / 1024:.0f} MB before, peak "
        f"{result['rss_peak_kb'] / 1024:.0f} MB: growth {growth_mb:.1f} MB "
        f"(process peak since start {result['ru_maxrss_kb'] / 1024:.0f} MB)"
    )
    return growth_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=6)
    parser.add_argument("--xlsx", action="store_true", help="also export the lines as XLSX")
    parser.add_argument("--export", choices=("csv", "xlsx"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export:  # the child process of step 4
        setup_django()
        print(json.dumps(measure_export(args.export)))
        return 0
    log(f"database {DATABASE_URL}: drop, create, migrate")
    recreate_database()
    setup_django()
    seed(args.lines, args.tenants)
    slowest = time_reports()
    growth = export_in_child("csv")
    if args.xlsx:
        export_in_child("xlsx")
    log(
        f"slowest monthly report {slowest:.2f} s (target < {TARGET_REPORT_SECONDS:.0f} s); "
        f"CSV export peak RSS growth {growth:.1f} MB (target < {TARGET_EXPORT_MB:.0f} MB)"
    )
    return 0 if slowest < TARGET_REPORT_SECONDS and growth < TARGET_EXPORT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
