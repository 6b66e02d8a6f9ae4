"""Geometry of the point page's two charts, drawn as inline SVG by the template.

Server-side SVG: no chart library to ship to a supervisor's tablet, and the charts
show without JavaScript. Coordinates are SVG user units in a WIDTH x HEIGHT box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from checkin.occupancy import PointDay
from common.timeutil import zone

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 36, 22, 10, 24


@dataclass(frozen=True)
class Bar:
    """One arrival wave's bucket: bar box, the expected (booked) level's y, label texts."""

    x: float
    y: float
    width: float
    height: float
    expected_y: float
    label: str
    arrivals: int
    expected: float


@dataclass(frozen=True)
class Chart:
    """What the template draws: axis ticks ``[(x, text)]`` and ``[(y, text)]``, and
    either ``bars`` (arrivals) or a ``path`` (inside over the day) with ``limit_y``."""

    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    bars: list[Bar]
    path: str = ""
    limit_y: float | None = None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: float = HEIGHT - BOTTOM


def _nice_max(value: float) -> int:
    """The smallest of 1, 2, 5 x 10^k at least ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)


def _x_scale(day: PointDay):
    span = (day.end - day.start).total_seconds() or 1.0
    plot = WIDTH - LEFT - RIGHT

    def x(instant: datetime) -> float:
        return round(LEFT + plot * (instant - day.start).total_seconds() / span, 1)

    return x


def _y_scale(top: int):
    plot = HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return round(HEIGHT - BOTTOM - plot * value / top, 1)

    return y


def _ticks(day: PointDay, top: int):
    x, y = _x_scale(day), _y_scale(top)
    tz = zone(day.point.timezone)
    local = day.start.astimezone(tz)
    hour = local.replace(minute=0, second=0, microsecond=0)
    if hour < local:
        hour += timedelta(hours=1)
    x_ticks = []
    while hour <= day.end.astimezone(tz):
        x_ticks.append((x(hour), hour.strftime("%H:%M")))
        hour += timedelta(hours=1)
    y_ticks = [(y(value), str(value)) for value in sorted({0, top // 2, top})]
    return x_ticks, y_ticks


def arrivals_chart(day: PointDay) -> Chart:
    """Bars of check-ins per arrival wave (``day.bucket_minutes``) against the
    bookings told to arrive in it (their ``arrive_at``; issue 15)."""
    top = _nice_max(max([*day.arrivals, *day.expected, 1]))
    x, y = _x_scale(day), _y_scale(top)
    bucket = timedelta(minutes=day.bucket_minutes)
    tz = zone(day.point.timezone)
    bars = []
    for index, (arrived, expected) in enumerate(zip(day.arrivals, day.expected, strict=True)):
        begins = day.start + index * bucket
        left, right = x(begins), x(min(begins + bucket, day.end))
        bars.append(
            Bar(
                x=left + 1,
                y=y(arrived),
                width=max(right - left - 2, 1),
                height=round(HEIGHT - BOTTOM - y(arrived), 1),
                expected_y=y(expected),
                label=begins.astimezone(tz).strftime("%H:%M"),
                arrivals=arrived,
                expected=expected,
            )
        )
    x_ticks, y_ticks = _ticks(day, top)
    return Chart(x_ticks, y_ticks, bars)


def inside_chart(day: PointDay) -> Chart:
    """A step line of people inside over the day, and the safe limit as a line.

    The line stops at ``day.now``: the future is not known yet (a visit still open
    would otherwise be drawn as if it lasted to the end of the day). A day that has
    not begun has no line (``path`` ""); a past day is drawn to its end.
    """
    limit = day.point.safe_limit
    top = _nice_max(max([limit, *(count for _, count in day.inside)]) * 1.1)
    x, y = _x_scale(day), _y_scale(top)
    stop = day.end if day.now is None else min(day.end, day.now)
    points: list[str] = []
    previous = None
    for instant, count in day.inside:
        if instant > stop:
            break
        if previous is not None:
            points.append(f"{x(instant)},{y(previous)}")
        points.append(f"{x(instant)},{y(count)}")
        previous = count
    if previous is not None:
        points.append(f"{x(stop)},{y(previous)}")
    x_ticks, y_ticks = _ticks(day, top)
    path = "M" + " L".join(points) if stop >= day.start and points else ""
    return Chart(x_ticks, y_ticks, [], path=path, limit_y=y(limit))
