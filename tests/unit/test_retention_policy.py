"""Retention's time rules (optibridge.retention.policy), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from optibridge.core.config import Settings
from optibridge.retention.policy import RetentionPolicy, job_age_hours

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_cutoffs_follow_window_and_margin() -> None:
    policy = RetentionPolicy.from_settings(Settings(retention_margin_days=2))
    assert policy.final_before(NOW) == NOW - timedelta(days=2)
    assert policy.idle_before(NOW) == NOW - timedelta(days=9)  # 7-day reporting window + 2


def test_job_age_counts_from_the_runs_clock() -> None:
    keep = timedelta(days=7)
    assert job_age_hours(keep, NOW, NOW) == 168
    # The run simulates a day ten days back: jobs older than that day minus 7 days go, i.e.
    # older than 17 days by the database's clock.
    assert job_age_hours(keep, NOW - timedelta(days=10), NOW) == 408
    # A run's clock ahead of the database's never asks for a negative age.
    assert job_age_hours(timedelta(0), NOW + timedelta(days=1), NOW) == 0
