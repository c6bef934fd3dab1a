"""Optimove's date and time strings <-> aware UTC datetimes.

Optimove writes times as "YYYY-MM-DD HH:MM:SS" (sometimes without seconds) with no zone; the
integration guide says all campaign times are UTC. A campaign of a million customers shares a
handful of ScheduledTime values, so parsing is cached: the page loop pays for a dict lookup.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache

OPTIMOVE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@lru_cache(maxsize=8192)
def parse_optimove_time(value: str) -> datetime:
    """Parse "YYYY-MM-DD HH:MM[:SS]" (also ISO-8601 with "T" or a zone) as an aware UTC datetime.

    A value without a zone is taken as UTC; a value with one is converted to UTC.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an Optimove date-time: {value!r}") from None
    if len(text) < 16:  # a bare date is not a time; refusing it catches a wrong field early
        raise ValueError(f"not an Optimove date-time (no time of day): {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_optimove_date(value: str) -> date:
    """Parse "YYYY-MM-DD" (a longer date-time is accepted and truncated to its date)."""
    text = value.strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"not an Optimove date: {value!r}") from None


def format_optimove_time(moment: datetime) -> str:
    """Format an aware datetime as Optimove's "YYYY-MM-DD HH:MM:SS" in UTC."""
    if moment.tzinfo is None:
        raise ValueError("refusing a naive datetime: its zone is ambiguous")
    return moment.astimezone(UTC).strftime(OPTIMOVE_TIME_FORMAT)


def format_optimove_date(day: date | datetime) -> str:
    if isinstance(day, datetime):
        if day.tzinfo is None:
            raise ValueError("refusing a naive datetime: its zone is ambiguous")
        day = day.astimezone(UTC).date()
    return day.isoformat()
