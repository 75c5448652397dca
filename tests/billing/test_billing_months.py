"""Billing months in a tenant's time zone (billing/periods.py): the last second of a
month, daylight-saving changes, a year's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from billing.periods import billing_month_bounds, billing_month_of

NEW_YORK, PARIS = "America/New_York", "Europe/Paris"


def test_the_last_second_of_a_local_month_belongs_to_it():
    last = datetime(2026, 1, 31, 23, 59, 59, tzinfo=ZoneInfo(NEW_YORK))  # 04:59:59 UTC Feb 1

    assert billing_month_of(moment=last, time_zone=NEW_YORK) == "2026-01"
    assert billing_month_of(moment=last, time_zone="UTC") == "2026-02"
    assert billing_month_of(moment=last + timedelta(seconds=1), time_zone=NEW_YORK) == "2026-02"


def test_a_month_is_bounded_by_local_midnights():
    start, end = billing_month_bounds(month="2026-01", time_zone=NEW_YORK)

    assert start == datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert end == datetime(2026, 2, 1, 5, tzinfo=UTC)
    assert start.tzinfo == UTC
    last = datetime(2026, 2, 1, 4, 59, 59, tzinfo=UTC)
    assert start <= last < end


def test_a_month_with_a_daylight_saving_change_is_an_hour_shorter_or_longer():
    march = billing_month_bounds(month="2026-03", time_zone=PARIS)  # clocks go forward
    october = billing_month_bounds(month="2026-10", time_zone=PARIS)  # and back

    assert march[1] - march[0] == timedelta(days=31, hours=-1)
    assert october[1] - october[0] == timedelta(days=31, hours=1)
    assert march[1] == datetime(2026, 3, 31, 22, tzinfo=UTC)
    # The hour that exists twice on the last Sunday of October is October's, both times.
    for fold in (0, 1):
        twice = datetime(2026, 10, 25, 2, 30, tzinfo=ZoneInfo(PARIS), fold=fold)
        assert october[0] <= twice < october[1]


def test_december_ends_at_the_next_years_first_local_midnight():
    start, end = billing_month_bounds(month="2026-12", time_zone="Pacific/Auckland")

    auckland = ZoneInfo("Pacific/Auckland")
    assert start.astimezone(auckland) == datetime(2026, 12, 1, tzinfo=auckland)
    assert end.astimezone(auckland) == datetime(2027, 1, 1, tzinfo=auckland)
    assert end == datetime(2026, 12, 31, 11, tzinfo=UTC)  # summer time there: UTC+13


@pytest.mark.parametrize("month", ["2026-1", "2026-13", "26-01", "2026-01-01", "2026-01\n"])
def test_a_month_not_written_yyyy_mm_is_refused(month):
    with pytest.raises(ValueError, match="YYYY-MM"):
        billing_month_bounds(month=month, time_zone="UTC")


def test_a_naive_moment_is_refused():
    with pytest.raises(ValueError, match="aware"):
        billing_month_of(moment=datetime(2026, 1, 31, 23, 59, 59), time_zone=NEW_YORK)
