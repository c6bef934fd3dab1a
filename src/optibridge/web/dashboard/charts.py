"""Charts as inline SVG, drawn on the server: no script, no library, nothing fetched (the CSP allows
inline SVG; a dashboard on a closed network needs nothing else). Pure functions of the numbers.

Each point is an element with `data-*` attributes (what it stands for) and a `<title>` (the tooltip
a browser shows without any script), so tests and people read the same numbers.

- sends per minute: one bar per minute of the campaign's span (gaps drawn as zero-height bars),
  the messages due in that minute overlaid as a line with one vertex per minute; a bar to the right
  of its due line is lateness.
- opens and clicks per hour: two bars per hour over the reporting window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

WIDTH = 760
HEIGHT = 180
LEFT = 44  # room for the y-axis labels
RIGHT = 8
TOP = 10
BOTTOM = 28  # room for the x-axis labels
MAX_MINUTES = 7 * 24 * 60
MAX_HOURS = 31 * 24
MARKED_POINTS = 120  # up to this many minutes, each due vertex also gets a dot


@dataclass(frozen=True, slots=True)
class MinutePoint:
    minute: datetime
    sent: int
    due: int


@dataclass(frozen=True, slots=True)
class HourPoint:
    hour: datetime
    opened: int
    clicked: int


def fill_minutes(rows: Sequence[tuple[datetime, int, int]], limit: int = MAX_MINUTES) -> list[MinutePoint]:
    """(minute, sent, due) rows, possibly with gaps, to one point per minute from the first to the
    last (at most `limit` points: a longer span keeps its first `limit` minutes)."""
    if not rows:
        return []
    by_minute = {m.replace(second=0, microsecond=0): (s, d) for m, s, d in rows}
    start, end = min(by_minute), max(by_minute)
    n = min(limit, int((end - start) / timedelta(minutes=1)) + 1)
    out = []
    for i in range(n):
        at = start + timedelta(minutes=i)
        sent, due = by_minute.get(at, (0, 0))
        out.append(MinutePoint(at, sent, due))
    return out


def fill_hours(
    rows: Sequence[tuple[datetime, int, int]],
    start: datetime | None,
    end: datetime | None,
    limit: int = MAX_HOURS,
) -> list[HourPoint]:
    """(hour, opened, clicked) rows to one point per hour from `start` (default: the first row) to
    `end` (default: the last row), both truncated to the hour; rows outside are kept by widening."""
    by_hour = {h.replace(minute=0, second=0, microsecond=0): (o, c) for h, o, c in rows}
    ends = list(by_hour)
    if start is not None:
        ends.append(start.replace(minute=0, second=0, microsecond=0))
    if end is not None:
        ends.append(end.replace(minute=0, second=0, microsecond=0))
    if not ends:
        return []
    first, last = min(ends), max(ends)
    n = min(limit, int((last - first) / timedelta(hours=1)) + 1)
    out = []
    for i in range(n):
        at = first + timedelta(hours=i)
        opened, clicked = by_hour.get(at, (0, 0))
        out.append(HourPoint(at, opened, clicked))
    return out


def _nice_max(value: int) -> int:
    """The y-axis top: `value` rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if value <= 1:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def _frame(kind: str, label: str, top: int, x_labels: list[tuple[float, str]], body: list[str]) -> Markup:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart {kind}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(label)}" data-ymax="{top}">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
        f'<text class="ylabel" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{top:,}</text>',
        f'<text class="ylabel" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (x, text) in enumerate(x_labels):
        # The first and last labels grow inwards, so none is cut at the chart's edge.
        anchor = (
            "start" if i == 0 and len(x_labels) > 1 else "end" if i == len(x_labels) - 1 and i else "middle"
        )
        edge = LEFT if anchor == "start" else WIDTH - RIGHT if anchor == "end" else x
        parts.append(
            f'<text class="xlabel" x="{edge:.1f}" y="{HEIGHT - 8}" '
            f'text-anchor="{anchor}">{escape(text)}</text>'
        )
    parts.extend(body)
    parts.append("</svg>")
    # Every piece of text above went through escape(); the rest is numbers and fixed markup.
    return Markup("".join(parts))  # noqa: S704


def _x_labels(times: list[datetime], fmt: str, slot: float) -> list[tuple[float, str]]:
    if not times:
        return []
    picks = sorted({0, len(times) // 2, len(times) - 1})
    return [(LEFT + slot * (i + 0.5), times[i].strftime(fmt)) for i in picks]


def sends_chart(points: Sequence[MinutePoint]) -> Markup:
    """Sends per minute (bars) with the messages due per minute overlaid (a line)."""
    label = "Sends per minute (bars) and messages due per minute (line), UTC"
    if not points:
        return Markup('<p class="empty" id="sends-chart-empty">Nothing sent or due yet.</p>')
    top = _nice_max(max(max(p.sent, p.due) for p in points))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / len(points)
    bar_w = max(slot * 0.8, 0.5)
    body = []
    line = []
    for i, p in enumerate(points):
        x = LEFT + slot * i + (slot - bar_w) / 2
        h = plot_h * p.sent / top
        y = TOP + plot_h - h
        stamp = p.minute.strftime("%Y-%m-%d %H:%M")
        body.append(
            f'<rect class="sent" x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" height="{h:.2f}" '
            f'data-minute="{p.minute.isoformat()}" data-sent="{p.sent}" data-due="{p.due}">'
            f"<title>{stamp} UTC: {p.sent:,} sent, {p.due:,} due</title></rect>"
        )
        line.append(f"{LEFT + slot * (i + 0.5):.2f},{TOP + plot_h - plot_h * p.due / top:.2f}")
    body.append(f'<polyline class="due" points="{" ".join(line)}"/>')
    if len(points) <= MARKED_POINTS:  # a line of one vertex (a one-minute campaign) draws nothing
        for vertex in line:
            cx, cy = vertex.split(",")
            body.append(f'<circle class="due" cx="{cx}" cy="{cy}" r="3"/>')
    fmt = "%H:%M" if points[-1].minute.date() == points[0].minute.date() else "%m-%d %H:%M"
    return _frame("sends", label, top, _x_labels([p.minute for p in points], fmt, slot), body)


def engagement_chart(points: Sequence[HourPoint]) -> Markup:
    """Opens and clicks per hour, side by side."""
    label = "Opens and clicks per hour (machine hits left out), UTC"
    if not points or not any(p.opened or p.clicked for p in points):
        return Markup('<p class="empty" id="engagement-chart-empty">No opens or clicks yet.</p>')
    top = _nice_max(max(max(p.opened, p.clicked) for p in points))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / len(points)
    bar_w = max(slot * 0.4, 0.5)
    body = []
    for i, p in enumerate(points):
        stamp = p.hour.strftime("%Y-%m-%d %H:00")
        for j, (kind, n) in enumerate((("opened", p.opened), ("clicked", p.clicked))):
            x = LEFT + slot * i + slot * 0.1 + bar_w * j
            h = plot_h * n / top
            body.append(
                f'<rect class="{kind}" x="{x:.2f}" y="{TOP + plot_h - h:.2f}" width="{bar_w:.2f}" '
                f'height="{h:.2f}" data-hour="{p.hour.isoformat()}" data-n="{n}">'
                f"<title>{stamp} UTC: {n:,} {kind}</title></rect>"
            )
    return _frame("engagement", label, top, _x_labels([p.hour for p in points], "%m-%d %H:00", slot), body)
