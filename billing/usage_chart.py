"""The Usage & billing page's chart of cost and tokens per day, laid out here and drawn as
inline SVG by templates/admin/billing/usage_chart.html: no JavaScript and nothing fetched,
so the page works on a machine without internet.

Cost is bars on the left axis, tokens a line with a point per day on the right one. Only
the geometry is float; the labels are formatted from the Decimal and int values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from billing.reports import SeriesPoint

WIDTH = 760
HEIGHT = 260
LEFT, RIGHT, TOP, BOTTOM = 64, 64, 16, 40  # margins for the axes' labels
TICKS = 4  # intervals on each vertical axis
MAX_DAY_LABELS = 8


@dataclass(frozen=True)
class Bar:
    day: date
    cost: str  # "$1.23"
    tokens: str  # "1,234"
    x: float
    y: float
    width: float
    height: float
    # The token line's point for the same day.
    cx: float
    cy: float


@dataclass(frozen=True)
class Tick:
    y: float
    cost: str
    tokens: str


@dataclass(frozen=True)
class DayLabel:
    x: float
    text: str


@dataclass(frozen=True)
class UsageChart:
    bars: list[Bar]
    line: str  # the tokens polyline's "x,y x,y ..."
    ticks: list[Tick]
    day_labels: list[DayLabel]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_x: int = WIDTH - RIGHT
    top: int = TOP
    bottom_y: int = HEIGHT - BOTTOM


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at least `value`: round axis maxima (1 for 0)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return 10.0 * magnitude  # pragma: no cover  (the loop ends at 10 x magnitude)


def money_label(value: Decimal) -> str:
    cents = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return f"${cents:,}"


def tokens_label(value: float) -> str:
    """An axis label: 1500000 -> "1.5M", 2000 -> "2k"."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def usage_chart(series: list[SeriesPoint]) -> UsageChart | None:
    """The chart of `series` (one point per day), or None when there is nothing to draw."""
    points = sorted(series, key=lambda point: point.day)
    if not points:
        return None
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = HEIGHT - BOTTOM
    cost_max = nice_ceiling(max(float(point.cost) for point in points))
    tokens_max = nice_ceiling(max(point.total_tokens for point in points))
    slot = plot_width / len(points)
    bar_width = max(slot * 0.6, 1.0)

    bars = []
    for index, point in enumerate(points):
        centre = LEFT + slot * (index + 0.5)
        height = plot_height * float(point.cost) / cost_max
        bars.append(
            Bar(
                day=point.day,
                cost=money_label(point.cost),
                tokens=f"{point.total_tokens:,}",
                x=round(centre - bar_width / 2, 2),
                y=round(baseline - height, 2),
                width=round(bar_width, 2),
                height=round(height, 2),
                cx=round(centre, 2),
                cy=round(baseline - plot_height * point.total_tokens / tokens_max, 2),
            )
        )
    ticks = [
        Tick(
            y=round(baseline - plot_height * step / TICKS, 2),
            cost=money_label(Decimal(str(cost_max)) * step / TICKS),
            tokens=tokens_label(tokens_max * step / TICKS),
        )
        for step in range(TICKS + 1)
    ]
    every = math.ceil(len(points) / MAX_DAY_LABELS)
    day_labels = [DayLabel(x=bar.cx, text=f"{bar.day:%b %d}") for bar in bars[::every]]
    line = " ".join(f"{bar.cx},{bar.cy}" for bar in bars)
    return UsageChart(bars=bars, line=line, ticks=ticks, day_labels=day_labels)
