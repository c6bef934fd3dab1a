"""The push schedule: right away, every interval on a fixed grid, a final push at the window's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from optibridge.core.reporting_settings import DEFAULT_INTERACTION_METRICS, ReportingSettings
from optibridge.optimove.models import MetricID
from optibridge.reporting.schedule import SchedulePolicy, next_push_after_failure, next_push_after_success

F = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
P = SchedulePolicy.from_settings(ReportingSettings())
H = timedelta(hours=1)


def test_pushes_follow_a_four_hour_grid_from_when_sending_finished() -> None:
    assert next_push_after_success(F, F, P) == F + 4 * H
    assert next_push_after_success(F, F + 4 * H, P) == F + 8 * H
    assert next_push_after_success(F, F + 4 * H + timedelta(minutes=3), P) == F + 8 * H  # late: same grid


def test_a_long_outage_snaps_to_the_grid_instead_of_catching_up() -> None:
    assert next_push_after_success(F, F + 50 * H, P) == F + 52 * H


def test_the_final_push_is_at_seven_days_and_after_it_nothing() -> None:
    assert next_push_after_success(F, F + timedelta(days=7) - H, P) == F + timedelta(days=7)
    assert next_push_after_success(F, F + timedelta(days=7), P) is None
    pushes, at = 1, F
    while (nxt := next_push_after_success(F, at, P)) is not None:
        pushes, at = pushes + 1, nxt
        assert pushes < 100  # bounded
    assert pushes == 43  # the first, 41 on the grid, the final


def test_failures_back_off_doubling_up_to_the_interval_then_give_up() -> None:
    now = F + H
    assert next_push_after_failure(now, 1, F, P) == now + timedelta(minutes=5)
    assert next_push_after_failure(now, 2, F, P) == now + timedelta(minutes=10)
    assert next_push_after_failure(now, 10, F, P) == now + 4 * H
    late = F + timedelta(days=8)
    assert next_push_after_failure(late, 1, F, P) is None


def test_the_default_interaction_lists_are_every_metric_but_sent() -> None:
    assert set(DEFAULT_INTERACTION_METRICS) == {int(m) for m in MetricID} - {int(MetricID.SENT)}
