"""The Usage & billing chart's layout (billing/usage_chart.py): pure arithmetic."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from billing.reports import SeriesPoint
from billing.usage_chart import HEIGHT, MAX_DAY_LABELS, nice_ceiling, tokens_label, usage_chart


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (0.3, 0.5), (1, 1), (1.01, 2), (7, 10), (1234, 2000)]
)
def test_axes_end_on_a_round_number(value, ceiling):
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_token_labels_are_short():
    assert [tokens_label(v) for v in (0, 950, 2000, 1_500_000, 3e9)] == [
        "0", "950", "2k", "1.5M", "3B",
    ]  # fmt: skip


def test_nothing_to_draw_is_no_chart():
    assert usage_chart([]) is None


def test_the_highest_day_reaches_the_top_of_its_axis_and_days_are_in_order():
    first = date(2026, 11, 1)
    chart = usage_chart(
        [
            SeriesPoint(first + timedelta(days=1), 500, Decimal("1")),
            SeriesPoint(first, 1000, Decimal("0.5")),
        ]
    )

    assert chart is not None
    assert [bar.day for bar in chart.bars] == [first, first + timedelta(days=1)]
    top, bottom = chart.top, chart.bottom_y
    assert [bar.y for bar in chart.bars] == [pytest.approx((top + bottom) / 2), top]
    assert [bar.cy for bar in chart.bars] == [top, pytest.approx((top + bottom) / 2)]
    assert chart.bars[1].cost == "$1.00" and chart.bars[0].tokens == "1,000"
    assert [tick.cost for tick in chart.ticks] == ["$0.00", "$0.25", "$0.50", "$0.75", "$1.00"]
    assert chart.line == " ".join(f"{bar.cx},{bar.cy}" for bar in chart.bars)
    assert all(0 <= bar.y <= HEIGHT for bar in chart.bars)


def test_a_long_range_labels_only_some_days():
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(90)]
    chart = usage_chart([SeriesPoint(day, 1, Decimal(0)) for day in days])

    assert chart is not None
    assert len(chart.bars) == 90
    assert len(chart.day_labels) <= MAX_DAY_LABELS
    # A day without cost draws no bar, and a zero maximum does not divide by zero.
    assert {bar.height for bar in chart.bars} == {0}
