"""Send-time policy: same local wall-clock time, quiet hours, and DST edges."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from optibridge.core.quiet_hours import QuietHours
from optibridge.intake.schedule import SendTimePolicy, send_time

LONDON = SendTimePolicy(local_send_time=True, reference_zone=ZoneInfo("Europe/London"))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_identity_policy_keeps_optimove_time() -> None:
    assert send_time(utc(2026, 6, 1, 9), "Asia/Tokyo", SendTimePolicy()) == utc(2026, 6, 1, 9)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/New_York", utc(2026, 6, 1, 14)),
        ("Asia/Tokyo", utc(2026, 6, 1, 1)),
        ("Europe/London", utc(2026, 6, 1, 9)),
        (None, utc(2026, 6, 1, 9)),
        ("Not/AZone", utc(2026, 6, 1, 9)),
    ],
)
def test_local_send_time_keeps_the_brand_wall_clock(zone: str | None, expected: datetime) -> None:
    assert send_time(utc(2026, 6, 1, 9), zone, LONDON) == expected  # 10:00 in London


def test_a_wall_time_skipped_by_dst_moves_past_the_gap() -> None:
    policy = SendTimePolicy(local_send_time=True)
    assert send_time(utc(2026, 3, 29, 2, 30), "Europe/Berlin", policy) == utc(2026, 3, 29, 1, 30)


def test_quiet_hours_across_midnight() -> None:
    q = QuietHours.parse("21:00-08:00")
    assert q.contains(time(22))
    assert q.contains(time(7, 59))
    assert not q.contains(time(8))
    policy = SendTimePolicy(quiet_hours=q)
    assert send_time(utc(2026, 6, 1, 22, 30), None, policy) == utc(2026, 6, 2, 8)
    assert send_time(utc(2026, 6, 1, 3), None, policy) == utc(2026, 6, 1, 8)
    assert send_time(utc(2026, 6, 1, 12), None, policy) == utc(2026, 6, 1, 12)
    assert send_time(utc(2026, 6, 1, 3), "Asia/Tokyo", policy) == utc(2026, 6, 1, 3)


def test_quiet_hours_within_a_day_and_bad_specs() -> None:
    policy = SendTimePolicy(quiet_hours=QuietHours.parse("12:00-14:00"))
    assert send_time(utc(2026, 6, 1, 13), None, policy) == utc(2026, 6, 1, 14)
    for bad in ("noon-night", "10:00-10:00", "25:00-01:00"):
        with pytest.raises(ValueError, match="quiet hours"):
            QuietHours.parse(bad)
