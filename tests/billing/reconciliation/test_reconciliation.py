"""Finance's figures reconcile to the cent with the audit log, whatever path they take.

Traffic goes through the proxy for three tenants in three time zones (UTC; Europe/Paris
billed in EUR; America/New_York with a 10% markup), two models on the stub and one on a
fake OpenAI server reporting cached and reasoning tokens, keys and tags, a price change on
October 15th, cache hits, streamed and cancelled requests, refused and failed ones. October
is closed; then a batch of October requests arrives late, and November's traffic. Every
report path (the report itself, CSV, XLSX, the command's JSON, the REST API) and the
statements must come to the audit rows' sum, per tenant and overall; re-running the
roll-ups changes nothing; purging the audit rows past retention changes no report, no
statement and no budget figure.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import Client
from openpyxl import load_workbook

from audit.models import AuditEvent
from billing.closing import period_close
from billing.exports import report_csv, report_json, report_xlsx
from billing.models import DailyUsage, PriceVersion, Statement, UsageLine
from billing.reports import ReportQuery, usage_report
from billing.rollups import rollup_date, rollup_pending
from billing.selectors import budget_spend_in_period
from billing.services import price_version_create
from billing.statements import statement_get
from billing.terms_services import exchange_rate_fix, tenant_terms_set
from tenants.models import Tenant
from tests import factories
from tests.billing.reconciliation.traffic import (
    Call,
    audit_cost,
    cents,
    every_hour,
    send,
    spread,
)
from tests.personas import make_persona

pytestmark = pytest.mark.django_db(transaction=True)

PARIS, NEW_YORK = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")
OCTOBER, NOVEMBER = "2026-10", "2026-11"
PRICE_CHANGE = datetime(2026, 10, 15, tzinfo=UTC)
EUR_RATE = Decimal("0.91730000")
TENANTS = ("acme", "globex", "initech")
EDGE_MOMENTS = (
    datetime(2026, 10, 31, 23, 59, 59, tzinfo=PARIS),
    datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS),  # the second 02:30 (CET)
    datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK),  # the second 01:30 (EST)
)
EDGE_DAYS = (
    ("globex", date(2026, 10, 31)),
    ("globex", date(2026, 10, 25)),
    ("initech", date(2026, 11, 1)),
)


def _world(personas, fake_openai) -> dict:
    initech = make_persona("initech", personas.model)
    summary = factories.make_model(
        personas.provider, "summary", input_per_million="30.40", output_per_million="61.20"
    )
    factories.make_route("summary", summary)
    cached = factories.make_route("cached", personas.model)
    cached.cache_ttl_seconds = 3600
    cached.save()
    openai = factories.make_provider(
        "fake-openai", kind="openai", base_url=fake_openai.openai_base_url, timeout_s=5
    )
    reasoning = factories.make_model(
        openai, "cached", input_per_million="40", output_per_million="80"
    )
    price_version_create(
        provider_model=reasoning,
        input_per_million=Decimal(40),
        output_per_million=Decimal(80),
        cached_input_per_million=Decimal("9.99"),
    )
    factories.make_route("thinker", reasoning)
    factories.make_route("broken", factories.make_model(openai, "fail-500"))
    tenant_terms_set(
        tenant=personas.globex.tenant, markup_percent=0, currency="EUR", time_zone="Europe/Paris"
    )
    tenant_terms_set(
        tenant=initech.tenant, markup_percent="10", currency="USD", time_zone="America/New_York"
    )
    for month in (OCTOBER, NOVEMBER):
        exchange_rate_fix(currency="EUR", month=month, rate=EUR_RATE)
    keys = {}
    for persona in (personas.acme, personas.globex, initech):
        keys[persona.tenant.slug] = [persona.plaintext_key, persona.issue_key().plaintext]
    revoked = personas.acme.issue_key(name="revoked")
    from tenants.services import api_key_revoke

    api_key_revoke(api_key=revoked.api_key)
    return {"keys": keys, "revoked": revoked.plaintext, "echo": personas.model}


def _calls(world: dict, count: int, *, salt: str) -> list[Call]:
    """`count` calls over every tenant, key, route, tag set and kind of call."""
    routes = ["echo", "echo", "summary", "thinker", "cached"]
    tag_sets = [None, {"team": "search"}, {"team": "ads", "feature": "chat"}, {"feature": "çà"}]
    calls = []
    for i in range(count):
        slug = TENANTS[i % 3]
        key = world["keys"][slug][(i // 3) % 2]
        route = routes[i % len(routes)]
        question = f"{salt} question {i % 7}" if route == "cached" else f"{salt} question {i}"
        stream = i % 4 == 1
        calls.append(
            Call(
                key,
                route,
                tag_sets[i % len(tag_sets)],
                stream=stream,
                question=question,
                cancel=stream and i % 20 == 9,
            )
        )
        if i % 50 == 0:  # refused: an unknown route, a revoked key; failed: upstream 500
            calls += [
                Call(key, "no-such-route"),
                Call(world["revoked"], "echo"),
                Call(key, "broken"),
            ]
    return calls


def _report_total(tenant: str | None, month: str):
    return usage_report(ReportQuery(tenant_slug=tenant, month=month, group_by="model")).total


def _figures(tenant: str | None) -> dict:
    """Every report path's total cost of October and of November, exact."""
    figures: dict[str, Decimal] = {}
    for month in (OCTOBER, NOVEMBER):
        query = ReportQuery(tenant_slug=tenant, month=month, group_by="tag")
        report = usage_report(query)
        assert sum((row.cost for row in report.rows), Decimal(0)) == report.total.cost
        parsed = list(csv.reader(io.StringIO("".join(report_csv(report)))))
        figures[f"report {month}"] = report.total.cost
        figures[f"csv {month}"] = Decimal(parsed[-1][-1])
        as_json = report_json(report)
        assert Decimal(as_json["total"]["cost"]) == report.total.cost
        args = ["--month", month, "--format", "json"] + (["--tenant", tenant] if tenant else [])
        out = io.StringIO()
        call_command("billing_report", *args, stdout=out)
        figures[f"command {month}"] = Decimal(json.loads(out.getvalue())["total"]["cost"])
    return figures


def _by_month(figures: dict, path: str) -> Decimal:
    """One path's total over both months, to the cent."""
    return cents(sum((figures[f"{path} {month}"] for month in (OCTOBER, NOVEMBER)), Decimal(0)))


def _rollup_rows() -> list[tuple]:
    return sorted(
        DailyUsage.objects.values_list(
            "tenant_id",
            "day",
            "late",
            "api_key_id",
            "route",
            "model",
            "price_version_id",
            "tags",
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "cost_usd",
        )
    )


def _statements(month: str) -> dict:
    return {slug: statement_get(tenant_slug=slug, month=month) for slug in TENANTS}


def _statement_sum(slug: str) -> Decimal:
    return sum(
        (s.subtotal_usd + s.adjustments_usd for s in Statement.objects.filter(tenant_slug=slug)),
        Decimal(0),
    )


async def test_every_figure_reconciles_to_the_cent_with_the_audit_log(
    personas, fake_openai, settings, admin_user
):
    world = await sync_to_async(_world)(personas, fake_openai)

    # October 1-14 at the first prices; the 15th brings new ones for `echo`.
    first = await send(_calls(world, 900, salt="a"))
    await sync_to_async(spread)(
        first.request_ids, every_hour(datetime(2026, 10, 1, 2, tzinfo=UTC), PRICE_CHANGE)
    )
    new_price = await sync_to_async(price_version_create)(
        provider_model=world["echo"],
        input_per_million=Decimal("21.10"),
        output_per_million=Decimal("79.90"),
    )
    await sync_to_async(PriceVersion.objects.filter(pk=new_price.pk).update)(
        effective_from=PRICE_CHANGE
    )
    second = await send(_calls(world, 900, salt="b"))
    await sync_to_async(spread)(
        second.request_ids, every_hour(PRICE_CHANGE, datetime(2026, 10, 31, 20, tzinfo=UTC))
    )
    # Edges: globex a second before midnight at the end of October in Paris (22:59:59 UTC:
    # October there, whatever UTC says), and in the hour Paris clocks go back (Oct 25);
    # initech in the hour New York's clocks go back (Nov 1, 01:30 happens twice).
    edges = await send(
        [Call(world["keys"]["globex"][0], "echo")] * 2 + [Call(world["keys"]["initech"][0], "echo")]
    )
    for request_id, moment in zip(edges.request_ids, EDGE_MOMENTS, strict=True):
        await sync_to_async(spread)([request_id], [moment])
    assert second.count(404) and second.count(401)
    assert any(status >= 500 for status in second.statuses)  # `broken` failed upstream

    await sync_to_async(rollup_pending)()
    october = await sync_to_async(period_close)(month=OCTOBER, user=admin_user)
    assert {statement.tenant_slug for statement in october} == set(TENANTS)
    issued_october = await sync_to_async(_statements)(OCTOBER)

    # A batch of October's requests arrives after the close (the audit writer was held
    # back): billed in November, as adjustments.
    late = await send(_calls(world, 120, salt="late"))
    await sync_to_async(spread)(
        late.request_ids,
        every_hour(datetime(2026, 10, 20, tzinfo=UTC), datetime(2026, 10, 30, tzinfo=UTC)),
    )
    november = await send(_calls(world, 450, salt="c"))
    await sync_to_async(spread)(
        november.request_ids,
        every_hour(datetime(2026, 11, 1, 6, tzinfo=UTC), datetime(2026, 11, 30, 20, tzinfo=UTC)),
    )
    await sync_to_async(rollup_pending)()

    await sync_to_async(_check_everything)(world, late, issued_october, admin_user, settings)


def _check_everything(world, late, issued_october, admin_user, settings) -> None:
    # The ledger is the audit log's billable part, cent for cent and line for line.
    lines = UsageLine.objects.count()
    billable = AuditEvent.objects.exclude(outcome="rejected").exclude(cost_usd=0, prompt_tokens=0)
    assert lines == billable.count() > 2000
    assert sum(UsageLine.objects.values_list("cost_usd", flat=True), Decimal(0)) == audit_cost()
    assert UsageLine.objects.filter(cached_tokens__gt=0, reasoning_tokens__gt=0).exists()
    assert UsageLine.objects.filter(outcome="cancelled").exists()
    assert UsageLine.objects.filter(metadata__cache="exact").exists()
    assert UsageLine.objects.values("price_version_id").distinct().count() >= 4

    # Every report path, per tenant and overall, equals the audit rows' sum.
    expected_all = cents(audit_cost())
    per_tenant = {slug: _figures(slug) for slug in TENANTS}
    overall = _figures(None)
    for path in ("report", "csv", "command"):
        assert _by_month(overall, path) == expected_all, path
        for slug in TENANTS:
            assert _by_month(per_tenant[slug], path) == cents(audit_cost(tenant_slug=slug))
    exact_per_tenant = (
        per_tenant[slug][f"report {month}"] for slug in TENANTS for month in (OCTOBER, NOVEMBER)
    )
    assert cents(sum(exact_per_tenant, Decimal(0))) == expected_all

    # XLSX and the REST API, per tenant and month.
    client = Client()
    client.force_login(admin_user)
    for slug in TENANTS:
        for month in (OCTOBER, NOVEMBER):
            report = usage_report(ReportQuery(tenant_slug=slug, month=month))
            path = settings.STATE_DIR / f"reconcile-{slug}-{month}.xlsx"
            report_xlsx(report, path)
            sheet = load_workbook(path, read_only=True)["usage"]
            *_, total_row = sheet.iter_rows(values_only=True)
            assert total_row[0] == "(total)"
            assert Decimal(total_row[-1]) == report.total.cost  # the exact column
            assert cents(Decimal(str(total_row[-2]))) == cents(report.total.cost)  # the number
            answer = client.get("/api/v1/billing/usage/", {"tenant": slug, "month": month})
            assert answer.status_code == 200, answer.content
            assert cents(Decimal(answer.json()["total"]["cost"])) == cents(report.total.cost)

    # Statements: October's and November's (with the late batch as adjustment lines) sum
    # to the audit rows; October's did not change when the late batch came.
    period_close(month=NOVEMBER, user=admin_user)
    for slug in TENANTS:
        assert cents(_statement_sum(slug)) == cents(audit_cost(tenant_slug=slug)), slug
        assert statement_get(tenant_slug=slug, month=OCTOBER) == issued_october[slug]
        november = statement_get(tenant_slug=slug, month=NOVEMBER)
        late_cost = audit_cost(tenant_slug=slug, request_id__in=late.request_ids)
        adjustments = [line for line in november.lines if line.adjustment_of == OCTOBER]
        assert adjustments and cents(november.adjustments_usd) == cents(late_cost)
    initech = statement_get(tenant_slug="initech", month=NOVEMBER)
    assert initech.total_usd == initech.subtotal_usd + initech.adjustments_usd + initech.markup_usd
    assert cents(initech.markup_usd) == cents(
        (initech.subtotal_usd + initech.adjustments_usd) * Decimal("0.10")
    )
    globex = statement_get(tenant_slug="globex", month=OCTOBER)
    assert (globex.currency, globex.exchange_rate) == ("EUR", EUR_RATE)
    assert globex.total == cents(globex.total_usd * EUR_RATE)

    # Time zones: each edge request is rolled into its tenant's local day.
    for moment, (slug, day) in zip(EDGE_MOMENTS, EDGE_DAYS, strict=True):
        line = UsageLine.objects.get(created_at=moment, tenant_slug=slug)
        assert DailyUsage.objects.filter(
            tenant_slug=slug, day=day, late=False, api_key_id=line.api_key_id
        ).exists()

    # Re-running the roll-ups, incrementally and day by day, changes nothing.
    before = _rollup_rows()
    rollup_pending()
    day = date(2026, 10, 1)
    while day <= date(2026, 11, 30):
        rollup_date(day)
        day += timedelta(days=1)
    assert _rollup_rows() == before

    # Purging the audit rows past retention changes no report, statement or budget figure.
    acme = Tenant.objects.get(slug="acme")
    spend_before = budget_spend_in_period(
        scope="tenant",
        subject_id=acme.pk,
        start=datetime(2026, 10, 1, tzinfo=UTC),
        end=datetime(2026, 11, 1, tzinfo=UTC),
    )
    reports_before = ({s: _figures(s) for s in TENANTS}, _figures(None))
    statements_before = {s: statement_get(tenant_slug=s, month=NOVEMBER) for s in TENANTS}
    settings.AUDIT_RETENTION_DAYS = 7
    from audit.tasks import audit_purge_expired

    assert audit_purge_expired() > 2000
    assert not AuditEvent.objects.filter(created_at__lt=datetime(2026, 11, 20, tzinfo=UTC)).exists()
    assert ({s: _figures(s) for s in TENANTS}, _figures(None)) == reports_before
    assert {s: statement_get(tenant_slug=s, month=NOVEMBER) for s in TENANTS} == statements_before
    assert (
        budget_spend_in_period(
            scope="tenant",
            subject_id=acme.pk,
            start=datetime(2026, 10, 1, tzinfo=UTC),
            end=datetime(2026, 11, 1, tzinfo=UTC),
        )
        == spend_before
    )
