"""The admin index's dashboard: its figures against rows made here, each panel only for
those whose permissions open its data, and Redis being away never failing the page."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing.counters import budget_counter_key, cost_to_units
from billing.models import Budget, DailyUsage
from billing.periods import period_for
from gateway_project.dashboard.panels import PANELS
from gateway_project.lib import redis_client
from providers.circuit import breaker
from tests import factories
from tests.audit.test_admin import make_event
from tests.billing.ledger_lines import line
from tests.conftest import delete_redis_keys
from tests.gateway_project.management_api import make_staff, session
from tests.providers.test_circuit import target

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_circuits", "no_counters")]

INDEX = reverse("admin:index")


@pytest.fixture
def no_counters():
    async_to_sync(delete_redis_keys)("gw:bud:*")
    yield
    async_to_sync(delete_redis_keys)("gw:bud:*")


def text_of(content: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', content, re.S)
    assert match, f"no element #{element_id}"
    return match.group(1).strip()


@pytest.fixture
def traffic(acme, globex):
    """In the last hour: five answered requests (latencies 100..1000 ms, two 5xx) and one
    refused. Earlier today: four more. Two days ago: one, outside every window."""
    now = timezone.now()
    recent = [(100, 200), (200, 200), (300, 200), (400, 502), (1000, 504)]
    for index, (latency, status) in enumerate(recent):
        make_event(
            acme, request_id=f"req_h{index}", latency_ms=latency, status_code=status,
            outcome="success" if status == 200 else "upstream_error",
            created_at=now - timedelta(minutes=5 + index),
        )  # fmt: skip
    make_event(
        globex, request_id="req_refused", latency_ms=1, status_code=429, outcome="rejected",
        created_at=now - timedelta(minutes=20),
    )  # fmt: skip
    for index, latency in enumerate((500, 600, 700, 800)):
        make_event(
            globex, request_id=f"req_d{index}", latency_ms=latency,
            created_at=now - timedelta(hours=3, minutes=index),
        )  # fmt: skip
    make_event(acme, request_id="req_old", latency_ms=9999, created_at=now - timedelta(days=2))
    return now


def test_the_traffic_figures_are_those_of_the_rows(admin_client, traffic):
    content = admin_client.get(INDEX).content.decode()

    # Last hour: 6 requests, 2 errors (5xx); latencies of the 5 answered ones (the refusal
    # is left out): p50 = 300, p95 = 400 + 0.8 * (1000 - 400) = 880.
    assert text_of(content, "traffic-requests-1h") == "6"
    assert text_of(content, "traffic-error-rate-1h") == "33.3%"
    assert text_of(content, "traffic-p50-1h") == "300 ms"
    assert text_of(content, "traffic-p95-1h") == "880 ms"
    # Last 24 hours: 10 requests, 2 errors; latencies 100, 200, 300, 400, 500, 600, 700,
    # 800, 1000: p50 = 500, p95 at rank 7.6 = 800 + 0.6 * 200 = 920.
    assert text_of(content, "traffic-requests-24h") == "10"
    assert text_of(content, "traffic-error-rate-24h") == "20.0%"
    assert text_of(content, "traffic-p50-24h") == "500 ms"
    assert text_of(content, "traffic-p95-24h") == "920 ms"
    tenants = re.findall(
        r"<tr><td>([\w()]+)</td><td class=\"number\">(\d+)</td><td class=\"number\">(\d+)</td>",
        content[content.index('id="top-tenants-traffic"') :],
    )
    assert tenants[:2] == [("acme", "5", "2"), ("globex", "5", "0")]
    bars = re.findall(
        r'class="requests-bar"[^>]*data-requests="(\d+)" data-errors="(\d+)"', content
    )
    assert len(bars) in (24, 25)  # each hour of the window, the current one included
    assert sum(int(r) for r, _ in bars) == 10 and sum(int(e) for _, e in bars) == 2
    assert "<script" not in content[content.index('id="dashboard"') :]  # inline SVG only


def test_percentiles_are_computed_in_sql_on_postgres(admin_client, traffic):
    with CaptureQueriesContext(connection) as captured:
        admin_client.get(INDEX)
    sql = " ".join(query["sql"] for query in captured.captured_queries)
    if connection.vendor == "postgresql":
        assert "percentile_cont" in sql
    else:  # SQLite: read the window's latencies and interpolate in Python
        assert '"latency_ms"' in sql


def test_an_empty_gateway_shows_dashes_not_errors(admin_client):
    content = admin_client.get(INDEX).content.decode()

    assert text_of(content, "traffic-requests-1h") == "0"
    assert text_of(content, "traffic-error-rate-1h") == "—"
    assert text_of(content, "traffic-p95-24h") == "—"
    assert text_of(content, "spend-month") == "$0.00"
    assert "No requests in the last 24 hours." in content
    assert 'id="usage-chart"' not in content and "No usage this month yet." in content
    assert text_of(content, "circuits-state") == "No provider targets yet."


def test_spend_comes_from_the_daily_roll_ups(admin_client, acme, globex):
    today = timezone.now().date()
    first = today.replace(day=1)
    last_month = first - timedelta(days=1)

    def rollup(tenant, day, cost: str, requests: int = 1) -> None:
        DailyUsage.objects.create(
            tenant_id=tenant.id, tenant_slug=tenant.slug, day=day, requests=requests,
            total_tokens=requests * 100, cost_usd=Decimal(cost), built_at=timezone.now(),
        )  # fmt: skip

    rollup(acme, today, "1.25", 3)
    rollup(globex, today, "0.50")
    rollup(acme, first, "2.00")  # the same day as today on the 1st
    rollup(globex, last_month, "100.00")  # last month: counted nowhere here

    content = admin_client.get(INDEX).content.decode()

    expected_today = Decimal("1.75") + (Decimal("2.00") if first == today else 0)
    assert text_of(content, "spend-today") == f"${expected_today:.2f}"
    assert text_of(content, "spend-month") == "$3.75"
    spend_table = content[content.index('id="top-tenants-spend"') :]
    assert re.findall(r"<tr><td>(\w+)</td>", spend_table)[:2] == ["acme", "globex"]
    assert 'id="usage-chart"' in content


def _budget(tenant, *, cost: str) -> Budget:
    return Budget.objects.create(scope="tenant", tenant=tenant, max_cost_usd=Decimal(cost))


def _set_counter(budget: Budget, *, spent: str) -> None:
    key = budget_counter_key(budget.id, period_for(budget.period, timezone.now()))

    async def write() -> None:
        client = redis_client.new_client()
        try:
            await client.hset(
                key, mapping={"st": 0, "sc": cost_to_units(Decimal(spent)), "rt": 0, "rc": 0}
            )
        finally:
            await client.aclose()

    async_to_sync(write)()


def test_budgets_near_their_limit_are_listed_from_their_live_counters(admin_client, acme, globex):
    hot = _budget(acme, cost="10")
    _set_counter(hot, spent="9.5")  # 95%
    cool = _budget(globex, cost="10")
    _set_counter(cool, spent="5")  # 50%: not listed
    ledger_only = Budget.objects.create(scope="tenant", tenant=globex, max_tokens=1000)
    line(globex, timezone.now() - timedelta(minutes=1), prompt=700, completion=150)  # 85%

    content = admin_client.get(INDEX).content.decode()

    listed = re.findall(r'<tr id="budget-(\d+)">.*?<td class="number \w+">([\d.]+)%', content, re.S)
    assert listed == [(str(hot.id), "95.0"), (str(ledger_only.id), "85.0")]
    assert reverse("admin:billing_budget_change", args=[hot.id]) in content


def test_with_redis_away_budgets_come_from_the_ledger_and_circuits_are_unknown(
    admin_client, acme, settings
):
    budget = Budget.objects.create(scope="tenant", tenant=acme, max_tokens=1000)
    _set_counter(budget, spent="0")  # the live counter says nothing spent: not read now
    line(acme, timezone.now() - timedelta(minutes=1), prompt=800, completion=100)  # 90%
    provider = factories.make_provider("down-ai")
    factories.make_model(provider, "m")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    breaker.forget()

    response = admin_client.get(INDEX)

    assert response.status_code == 200
    content = response.content.decode()
    assert "Unknown: Redis cannot be reached" in content
    assert re.search(rf'<tr id="budget-{budget.id}">.*?90.0%', content, re.S)  # the ledger's


def test_open_circuits_are_listed(admin_client):
    provider = factories.make_provider("acme-ai")
    factories.make_model(provider, "broken")
    factories.make_model(provider, "fine")
    async_to_sync(breaker.record)(
        target("broken", provider="acme-ai", threshold=1), ok=False, kind="server_error"
    )

    content = admin_client.get(INDEX).content.decode()
    circuits = content[content.index('id="panel-circuits"') :]

    assert re.search(r"<td>acme-ai/broken</td><td class=\"bad\" data-state=\"open\">open", circuits)
    assert "acme-ai/fine" not in circuits


def test_all_closed_says_so(admin_client):
    factories.make_model(factories.make_provider("acme-ai"), "fine")

    content = admin_client.get(INDEX).content.decode()

    assert text_of(content, "circuits-state") == "All 1 target closed."


def panels_shown(client) -> set[str]:
    content = client.get(INDEX).content.decode()
    return {
        name
        for name in ("traffic", "spend", "budgets", "circuits")
        if f'id="panel-{name}"' in content
    }


def test_each_panel_is_shown_only_to_those_allowed_its_data():
    superuser = get_user_model().objects.create_superuser("root", password="x")
    ops = make_staff("olga", groups=("Ops",))
    finance = make_staff("fred", groups=("Finance",))
    nobody = make_staff("nina")
    only_circuits = make_staff("carl", "providers.view_provider")

    assert panels_shown(session(superuser)) == {"traffic", "spend", "budgets", "circuits"}
    assert panels_shown(session(ops)) == {"traffic", "budgets", "circuits"}
    assert panels_shown(session(finance)) == {"spend", "budgets"}
    assert panels_shown(session(nobody)) == set()
    assert panels_shown(session(only_circuits)) == {"circuits"}
    assert {spec.name for spec in PANELS} == {"traffic", "spend", "budgets", "circuits"}


def test_the_index_keeps_the_app_list_and_links_to_the_live_page_and_audit_log(admin_client):
    content = admin_client.get(INDEX).content.decode()

    assert 'id="app-list"' in content
    assert reverse("admin:tenants_tenant_changelist") in content  # Django's list of apps
    assert re.search(r'id="link-live" href="/admin/live/"', content)
    assert re.search(
        rf'id="link-audit-log" href="{reverse("admin:audit_auditevent_changelist")}"', content
    )


def test_finance_gets_no_traffic_link(client):
    client.force_login(make_staff("fred", groups=("Finance",)))
    content = client.get(INDEX).content.decode()

    assert 'id="link-live"' not in content and 'id="link-audit-log"' not in content
    assert 'id="link-usage"' in content


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(INDEX)

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_cached_figures_are_reused_within_their_time(admin_client, traffic, settings):
    settings.DASHBOARD_CACHE_SECONDS = 60
    cache.delete_many([f"admin-dashboard:{spec.name}:v1" for spec in PANELS])
    try:
        admin_client.get(INDEX)
        with CaptureQueriesContext(connection) as captured:
            content = admin_client.get(INDEX).content.decode()
    finally:
        cache.delete_many([f"admin-dashboard:{spec.name}:v1" for spec in PANELS])

    assert not [q for q in captured.captured_queries if "audit_auditevent" in q["sql"]]
    assert text_of(content, "traffic-requests-24h") == "10"


def test_the_dashboard_makes_a_bounded_number_of_queries(
    admin_client, traffic, acme, django_assert_max_num_queries
):
    for index in range(5):
        _budget(acme, cost=str(index + 1))
    with django_assert_max_num_queries(30):
        assert admin_client.get(INDEX).status_code == 200


def test_budgets_without_counters_are_summed_in_one_query_per_scope_and_period(acme, globex):
    from billing.selectors import budget_usage_list

    for tenant in (acme, globex):
        for cost in ("1", "2", "3"):
            _budget(tenant, cost=cost)
    Budget.objects.create(scope="tenant", tenant=acme, max_tokens=100, period="daily")
    line(acme, timezone.now() - timedelta(minutes=1), prompt=90, completion=0)

    with CaptureQueriesContext(connection) as captured:
        usage = budget_usage_list(at_least=Decimal(50))

    ledger = [q["sql"] for q in captured.captured_queries if "billing_usageline" in q["sql"]]
    assert len(ledger) == 2  # monthly and daily tenant budgets: one grouped query each
    assert [(u.budget.max_tokens, u.percent_used, u.live) for u in usage] == [
        (100, Decimal("90.0"), False)
    ]
