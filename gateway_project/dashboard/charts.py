"""The dashboard's requests-per-hour chart, laid out here and drawn as inline SVG by
templates/admin/dashboard/traffic_chart.html: no script, nothing fetched from elsewhere.

Requests are grey bars, the errors among them a red bar drawn over the same slot, on one
axis (billing/usage_chart.py draws the spend chart; its round-axis helpers are reused)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from audit.traffic import HourCount
from billing.usage_chart import nice_ceiling, tokens_label

WIDTH = 760
HEIGHT = 200
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 36
TICKS = 4
HOUR_LABEL_EVERY = 3


@dataclass(frozen=True)
class HourBar:
    hour: datetime
    requests: int
    errors: int
    x: float
    width: float
    y: float  # top of the requests bar
    height: float
    error_y: float
    error_height: float


@dataclass(frozen=True)
class AxisTick:
    y: float
    label: str


@dataclass(frozen=True)
class HourLabel:
    x: float
    text: str


@dataclass(frozen=True)
class TrafficChart:
    bars: list[HourBar]
    ticks: list[AxisTick]
    labels: list[HourLabel]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_x: int = WIDTH - RIGHT
    bottom_y: int = HEIGHT - BOTTOM


def traffic_chart(hours: list[HourCount]) -> TrafficChart | None:
    """The chart of `hours` (oldest first), or None when there is nothing to draw."""
    if not hours:
        return None
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = HEIGHT - BOTTOM
    top = nice_ceiling(max(hour.requests for hour in hours))
    slot = plot_width / len(hours)
    width = max(slot * 0.75, 1.0)
    bars = []
    for index, hour in enumerate(hours):
        height = plot_height * hour.requests / top
        error_height = plot_height * hour.errors / top
        bars.append(
            HourBar(
                hour=hour.hour,
                requests=hour.requests,
                errors=hour.errors,
                x=round(LEFT + slot * index + (slot - width) / 2, 2),
                width=round(width, 2),
                y=round(baseline - height, 2),
                height=round(height, 2),
                error_y=round(baseline - error_height, 2),
                error_height=round(error_height, 2),
            )
        )
    ticks = [
        AxisTick(
            y=round(baseline - plot_height * step / TICKS, 2),
            label=tokens_label(top * step / TICKS),
        )
        for step in range(TICKS + 1)
    ]
    labels = [
        HourLabel(x=round(bar.x + bar.width / 2, 2), text=f"{bar.hour:%H:00}")
        for bar in bars[::HOUR_LABEL_EVERY]
    ]
    return TrafficChart(bars=bars, ticks=ticks, labels=labels)
