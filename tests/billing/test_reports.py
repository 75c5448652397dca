"""Usage reports over the daily roll-ups (billing/reports.py): parameters, groupings,
filters, totals, the daily series."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import RollupCursor
from billing.reports import (
    GROUP_BY,
    ReportQuery,
    ReportQueryError,
    parse_report_query,
    query_parameters,
    usage_report,
)
from tests.billing.reporting_support import tags, usage
from tests.factories import make_tenant

pytestmark = pytest.mark.django_db

MARCH = "2027-03"


@pytest.fixture
def tenants():
    return make_tenant("acme"), make_tenant("globex")


def report(**parameters: str):
    return usage_report(parse_report_query({"month": MARCH, **parameters}))


def by_group(result) -> dict[str, tuple[int, Decimal]]:
    return {row.group: (row.requests, row.cost) for row in result.rows}


# --- parameters ------------------------------------------------------------------------------


def test_a_month_or_a_range_of_days_is_a_query(tenants):
    assert parse_report_query({"month": MARCH, "tenant": "acme"}) == ReportQuery(
        tenant_slug="acme", month=MARCH
    )
    query = parse_report_query(
        {"start": "2027-03-05", "end": "2027-04-02", "group_by": "tag", "tag_key": "team"}
    )
    assert (query.start, query.end, query.group_by, query.tag_key) == (
        date(2027, 3, 5),
        date(2027, 4, 2),
        "tag",
        "team",
    )


def test_empty_parameters_count_as_absent_and_others_are_ignored(tenants):
    query = parse_report_query({"month": MARCH, "tenant": "", "tag_key": " ", "page": "3"})
    assert query == ReportQuery(month=MARCH)


def test_a_query_reads_back_from_its_parameters(tenants):
    query = parse_report_query({"start": "2027-03-05", "end": "2027-03-09", "group_by": "day"})
    assert parse_report_query(query_parameters(query)) == query


@pytest.mark.parametrize(
    ("parameters", "param", "words"),
    [
        ({}, "month", "Give a month"),
        ({"month": "2027-3"}, "month", "YYYY-MM"),
        ({"month": "2027-13"}, "month", "YYYY-MM"),
        ({"month": MARCH, "start": "2027-03-01"}, "month", "not both"),
        ({"start": "2027-03-01"}, "end", "its end"),
        ({"end": "2027-03-01"}, "start", "its start"),
        ({"start": "2027-02-30", "end": "2027-03-01"}, "start", "YYYY-MM-DD"),
        ({"start": "yesterday", "end": "2027-03-01"}, "start", "YYYY-MM-DD"),
        ({"start": "2027-03-02", "end": "2027-03-01"}, "end", "before start"),
        ({"start": "2026-01-01", "end": "2027-01-02"}, "end", "this range has 367"),
        ({"month": MARCH, "group_by": "colour"}, "group_by", "model, route, key, tag, day"),
        ({"month": MARCH, "tag_key": "team"}, "tag_key", "group_by=tag"),
        ({"month": MARCH, "group_by": "tag", "tag_key": "k" * 101}, "tag_key", "at most 100"),
        ({"month": MARCH, "tenant": "initech"}, "tenant", "no tenant 'initech'"),
    ],
)
def test_bad_parameters_are_refused_with_a_message_naming_them(tenants, parameters, param, words):
    with pytest.raises(ReportQueryError) as refused:
        parse_report_query(parameters)
    assert refused.value.param == param
    assert words in str(refused.value)


def test_a_leap_year_of_366_days_is_allowed(tenants):
    query = parse_report_query({"start": "2028-01-01", "end": "2028-12-31"})
    assert (query.end - query.start).days + 1 == 366


# --- groupings -------------------------------------------------------------------------------


@pytest.fixture
def march(tenants):
    acme, globex = tenants
    usage(acme, date(2027, 3, 1), cost="1.5000000000", tags=tags(team="search", env="prod"))
    usage(
        acme,
        date(2027, 3, 1),
        cost="0.2500000000",
        requests=3,
        model="gpt-4o-mini",
        route="cheap",
        key_prefix="gwk_acme0002",
        tags=tags(team="ads"),
    )
    usage(acme, date(2027, 3, 31), cost="0.0000000001", cached=30, reasoning=7)
    usage(
        globex,
        date(2027, 3, 15),
        cost="2.0000000000",
        provider="anthropic",
        model="claude",
        key_prefix="gwk_globex01",
        tags=tags(env="prod"),
    )
    # Outside March on either side: in no March report.
    usage(acme, date(2027, 2, 28), cost="100")
    usage(acme, date(2027, 4, 1), cost="100")
    return acme, globex


def test_by_model_the_label_is_provider_slash_model_and_rows_go_by_cost(march):
    result = report()
    assert [row.group for row in result.rows] == [
        "anthropic/claude",
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
    ]
    assert by_group(result)["openai/gpt-4o"] == (2, Decimal("1.5000000001"))


def test_by_route_key_day_and_tenant(march):
    assert by_group(report(group_by="route")) == {
        "chat": (3, Decimal("3.5000000001")),
        "cheap": (3, Decimal("0.25")),
    }
    assert by_group(report(group_by="key", tenant="acme")) == {
        "gwk_acme0001": (2, Decimal("1.5000000001")),
        "gwk_acme0002": (3, Decimal("0.25")),
    }
    days = report(group_by="day")
    assert [row.group for row in days.rows] == ["2027-03-01", "2027-03-15", "2027-03-31"]
    assert by_group(report(group_by="tenant")) == {
        "globex": (1, Decimal("2")),
        "acme": (5, Decimal("1.7500000001")),
    }


def test_by_tag_set_each_request_counts_once_and_untagged_ones_are_none(march):
    assert by_group(report(group_by="tag")) == {
        "env=prod": (1, Decimal("2")),
        "env=prod, team=search": (1, Decimal("1.5")),
        "team=ads": (3, Decimal("0.25")),
        "(none)": (1, Decimal("0.0000000001")),
    }


def test_by_one_tag_requests_without_it_are_none_and_nothing_counts_twice(march):
    by_team = report(group_by="tag", tag_key="team")
    assert by_group(by_team) == {
        "search": (1, Decimal("1.5")),
        "(none)": (2, Decimal("2.0000000001")),
        "ads": (3, Decimal("0.25")),
    }
    assert by_team.total == report().total


def test_a_tenant_filter_keeps_only_its_usage(march):
    result = report(tenant="globex", group_by="tenant")
    assert by_group(result) == {"globex": (1, Decimal("2"))}
    assert result.total.cost == Decimal("2")


@pytest.mark.parametrize("group_by", GROUP_BY)
def test_the_total_is_the_sum_of_the_rows_whatever_the_grouping(march, group_by):
    result = report(group_by=group_by)
    total = result.total
    assert total.group == ""
    for name in (
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "total_tokens",
    ):
        assert getattr(total, name) == sum(getattr(row, name) for row in result.rows), name
    assert total.cost == sum((row.cost for row in result.rows), Decimal(0))
    assert total.cost == Decimal("3.7500000001")
    assert total.requests == 6
    assert isinstance(total.cost, Decimal)


def test_a_range_of_days_crosses_months(march):
    result = usage_report(parse_report_query({"start": "2027-03-31", "end": "2027-04-01"}))
    assert result.total.cost == Decimal("100.0000000001")


def test_late_usage_counts_in_the_month_whose_statement_bills_it(march):
    acme, _ = march
    # February's usage that arrived after February closed: rolled into March's first day.
    usage(acme, date(2027, 3, 1), cost="0.5", late=True)
    assert report(tenant="acme").total.cost == Decimal("2.2500000001")


def test_no_usage_is_an_empty_report_with_a_zero_total(tenants):
    result = report()
    assert result.rows == []
    assert (result.total.requests, result.total.cost) == (0, Decimal(0))
    assert result.as_of is None


# --- series and freshness --------------------------------------------------------------------


def test_the_series_has_every_day_of_the_period_with_zeros_between(march):
    series = report().series
    assert [point.day for point in series] == [
        date(2027, 3, 1) + timedelta(days=offset) for offset in range(31)
    ]
    assert series[0].cost == Decimal("1.75")
    assert series[0].total_tokens == 300
    assert series[1].cost == 0 and series[1].total_tokens == 0
    assert sum((point.cost for point in series), Decimal(0)) == report().total.cost


def test_as_of_is_when_the_roll_up_last_ran_else_when_the_rows_were_built(march):
    acme, _ = march
    built = timezone.now() - timedelta(hours=5)
    usage(acme, date(2027, 3, 2), built_at=built + timedelta(hours=1))
    # Rows built earlier by the march fixture have built_at now: the latest wins.
    assert report(tenant="globex").as_of is not None
    RollupCursor.objects.create(name="ledger", last_line_id=10)
    cursor = RollupCursor.objects.get(name="ledger")
    assert report().as_of == cursor.updated_at


def test_a_report_takes_the_same_few_queries_however_many_rows(
    tenants, django_assert_max_num_queries
):
    acme, _ = tenants
    for day in range(1, 29):
        for model in ("a", "b", "c"):
            usage(acme, date(2027, 3, day), model=model, tags=tags(team=str(day % 4)))
    query = parse_report_query({"month": MARCH, "tenant": "acme", "group_by": "tag"})
    with django_assert_max_num_queries(4):
        result = usage_report(query)
    assert len(result.rows) == 4
    assert result.total.requests == 28 * 3
