from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optibridge.optimove.timefmt import (
    format_optimove_date,
    format_optimove_time,
    parse_optimove_date,
    parse_optimove_time,
)


def test_parses_optimove_time_with_seconds_as_aware_utc() -> None:
    assert parse_optimove_time("2016-08-30 10:00:05") == datetime(2016, 8, 30, 10, 0, 5, tzinfo=UTC)


def test_parses_optimove_time_without_seconds() -> None:
    assert parse_optimove_time("2022-07-19 08:54") == datetime(2022, 7, 19, 8, 54, tzinfo=UTC)


def test_converts_zoned_values_to_utc() -> None:
    assert parse_optimove_time("2023-10-15T09:00:00Z") == datetime(2023, 10, 15, 9, tzinfo=UTC)
    assert parse_optimove_time("2023-10-15 11:00:00+02:00") == datetime(2023, 10, 15, 9, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "yesterday", "2016-08-30", "2016-13-01 10:00:00", "10:00"])
def test_rejects_values_that_are_not_date_times(bad: str) -> None:
    with pytest.raises(ValueError, match="not an Optimove date-time"):
        parse_optimove_time(bad)


def test_repeated_times_are_parsed_once_and_shared() -> None:
    """Customers share ScheduledTimes: the cache hands back the very same object."""
    assert parse_optimove_time("2030-01-01 09:00:00") is parse_optimove_time("2030-01-01 09:00:00")


def test_formats_in_utc_and_refuses_naive_datetimes() -> None:
    local = datetime(2024, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=3)))
    assert format_optimove_time(local) == "2024-03-01 09:30:00"
    with pytest.raises(ValueError, match="naive"):
        format_optimove_time(datetime(2024, 3, 1))


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 1, 1)))
def test_format_then_parse_round_trips_to_the_second(moment: datetime) -> None:
    aware = moment.replace(microsecond=0, tzinfo=UTC)
    assert parse_optimove_time(format_optimove_time(aware)) == aware


def test_dates_parse_and_format() -> None:
    assert parse_optimove_date("2015-08-13") == date(2015, 8, 13)
    assert parse_optimove_date("2015-08-13 00:00:00") == date(2015, 8, 13)
    assert format_optimove_date(date(2018, 6, 26)) == "2018-06-26"
    late = datetime(2018, 6, 26, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert format_optimove_date(late) == "2018-06-27"
    with pytest.raises(ValueError, match="not an Optimove date"):
        parse_optimove_date("26/06/2018")
