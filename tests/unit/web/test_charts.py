"""The dashboard's SVG charts (pure): one point per minute (or hour) of the span, numbers in data
attributes and tooltips, text escaped, nothing but inline SVG."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from optibridge.web.dashboard.charts import (
    HourPoint,
    _nice_max,
    engagement_chart,
    fill_hours,
    fill_minutes,
    sends_chart,
)

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def test_fill_minutes_gives_one_point_per_minute_with_gaps_as_zero() -> None:
    points = fill_minutes([(minute(0), 0, 100), (minute(1), 60, 0), (minute(4), 40, 0)])
    assert [p.minute for p in points] == [minute(i) for i in range(5)]
    assert [(p.sent, p.due) for p in points] == [(0, 100), (60, 0), (0, 0), (0, 0), (40, 0)]
    assert fill_minutes([]) == []
    assert len(fill_minutes([(minute(0), 1, 0), (minute(10_000), 1, 0)], limit=60)) == 60


def test_sends_chart_has_one_bar_and_one_due_vertex_per_minute() -> None:
    points = fill_minutes([(minute(0), 10, 30), (minute(1), 20, 0), (minute(2), 5, 5)])
    svg = str(sends_chart(points))
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    bars = re.findall(r'<rect class="sent"[^>]*data-sent="(\d+)" data-due="(\d+)"', svg)
    assert bars == [("10", "30"), ("20", "0"), ("5", "5")]
    line = re.search(r'<polyline class="due" points="([^"]+)"', svg)
    assert line is not None
    assert len(line.group(1).split()) == 3
    assert svg.count('<circle class="due"') == 3  # dots too: a one-minute line would not show
    assert "<script" not in svg
    assert "2026-11-29 12:01 UTC: 20 sent, 0 due" in svg
    assert 'data-ymax="50"' in svg  # 30 rounded up to 1/2/5 x 10^n


def test_the_tallest_bar_fills_the_plot_and_heights_are_proportional() -> None:
    svg = str(sends_chart(fill_minutes([(minute(0), 50, 0), (minute(1), 25, 0)])))
    heights = [float(h) for h in re.findall(r'<rect class="sent"[^>]*height="([\d.]+)"', svg)]
    assert heights[0] == 2 * heights[1]


def test_empty_charts_say_so() -> None:
    assert "Nothing sent or due yet" in str(sends_chart([]))
    assert "No opens or clicks yet" in str(engagement_chart([HourPoint(T0, 0, 0)]))


def test_fill_hours_spans_the_reporting_window_given() -> None:
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(hours=3, minutes=59)
    points = fill_hours([(T0 + timedelta(hours=1), 4, 1)], start, end)
    assert [p.hour for p in points] == [T0 + timedelta(hours=i) for i in range(4)]
    assert [(p.opened, p.clicked) for p in points] == [(0, 0), (4, 1), (0, 0), (0, 0)]
    assert fill_hours([], None, None) == []


def test_engagement_chart_has_an_open_and_a_click_bar_per_hour() -> None:
    points = fill_hours([(T0, 7, 2), (T0 + timedelta(hours=2), 1, 0)], None, None)
    svg = str(engagement_chart(points))
    assert re.findall(r'<rect class="opened"[^>]*data-n="(\d+)"', svg) == ["7", "0", "1"]
    assert re.findall(r'<rect class="clicked"[^>]*data-n="(\d+)"', svg) == ["2", "0", "0"]


def test_nice_max() -> None:
    assert [_nice_max(v) for v in (0, 1, 2, 3, 7, 10, 11, 230, 999)] == [1, 1, 2, 5, 10, 10, 20, 500, 1000]
