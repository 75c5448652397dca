"""Budget periods on calendar boundaries in the configured time zone (billing/periods.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing.periods import EPOCH, Period, period_for
from tests.billing.counters_support import ROME, T0

# --- periods ---------------------------------------------------------------------------------------


@pytest.fixture
def rome(settings):
    settings.GATEWAY_BUDGET_TIMEZONE = "Europe/Rome"


def hours(period: Period) -> float:
    # Aware datetimes sharing a tzinfo subtract as wall-clock times: compare real instants.
    assert period.end is not None
    return (period.end.astimezone(UTC) - period.start.astimezone(UTC)) / timedelta(hours=1)


def test_a_daylight_saving_day_in_rome_lasts_23_hours(rome):
    spring = period_for("daily", datetime(2027, 3, 28, 12, tzinfo=ROME))
    autumn = period_for("daily", datetime(2027, 10, 31, 12, tzinfo=ROME))

    assert spring.key == "d20270328"
    assert spring.start == datetime(2027, 3, 27, 23, tzinfo=UTC)
    assert spring.end == datetime(2027, 3, 28, 22, tzinfo=UTC)
    assert hours(spring) == 23
    assert hours(autumn) == 25


def test_the_week_with_the_clock_change_lasts_167_hours(rome):
    week = period_for("weekly", datetime(2027, 3, 28, 12, tzinfo=ROME))

    assert week.start == datetime(2027, 3, 22, tzinfo=ROME)
    assert hours(week) == 167


def test_a_week_starts_on_monday(rome):
    sunday_night = period_for("weekly", datetime(2027, 3, 21, 23, 59, 59, tzinfo=ROME))
    monday = period_for("weekly", datetime(2027, 3, 22, tzinfo=ROME))

    assert sunday_night.key == "w20270315"
    assert sunday_night.start == datetime(2027, 3, 15, tzinfo=ROME)
    assert sunday_night.start.weekday() == 0
    assert sunday_night.end == monday.start == datetime(2027, 3, 22, tzinfo=ROME)
    assert monday.key == "w20270322"


def test_december_rolls_over_into_january_of_the_next_year(rome):
    december = period_for("monthly", datetime(2027, 12, 31, 23, 59, 59, tzinfo=ROME))
    # 23:30 UTC on 31 December is already 1 January in Rome.
    january = period_for("monthly", datetime(2027, 12, 31, 23, 30, tzinfo=UTC))

    assert december.key == "m202712"
    assert december.start == datetime(2027, 12, 1, tzinfo=ROME)
    assert december.end == january.start == datetime(2028, 1, 1, tzinfo=ROME)
    assert january.key == "m202801"
    assert january.end == datetime(2028, 2, 1, tzinfo=ROME)


def test_a_period_contains_its_start_and_not_its_end(rome):
    for kind in ("daily", "weekly", "monthly"):
        period = period_for(kind, datetime(2027, 6, 15, 10, tzinfo=ROME))
        assert period_for(kind, period.start) == period
        assert period.end is not None
        assert period_for(kind, period.end).start == period.end
        assert period_for(kind, period.end - timedelta(microseconds=1)) == period


def test_periods_follow_the_configured_zone_utc_here(settings):
    settings.GATEWAY_BUDGET_TIMEZONE = "UTC"
    day = period_for("daily", datetime(2027, 1, 15, 23, 30, tzinfo=UTC))

    assert day.start == datetime(2027, 1, 15, tzinfo=UTC)
    assert day.key == "d20270115"


def test_a_total_budget_has_one_period_from_the_epoch():
    total = period_for("total", T0)

    assert (total.key, total.start, total.end) == ("total", EPOCH, None)


def test_an_unknown_period_is_an_error():
    with pytest.raises(ValueError, match="hourly"):
        period_for("hourly", T0)
