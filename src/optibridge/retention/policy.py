"""When rows are old enough to go: pure rules over times passed in (tests inject the clock)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from optibridge.core.config import Settings


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    window: timedelta = timedelta(days=7)  # the reporting window (ReportingSettings.window_days)
    margin: timedelta = timedelta(days=3)
    batch_rows: int = 5000
    max_seconds: float = 120.0
    campaigns_per_run: int = 200
    finished_jobs_keep: timedelta = timedelta(days=7)
    failed_jobs_keep: timedelta = timedelta(days=30)
    unsubscribe_keep: timedelta = timedelta(days=60)  # from sending; validated >= 30 in Settings
    notifications_keep: timedelta = timedelta(days=30)
    # Opt-outs Optimove accepted: kept a week to read back, not a setting (nothing else needs them,
    # and while one is kept a new opt-out of the same customer and mode cannot be queued again).
    sent_preferences_keep: timedelta = timedelta(days=7)

    @classmethod
    def from_settings(cls, s: Settings) -> RetentionPolicy:
        return cls(
            window=timedelta(days=s.reporting.window_days),
            margin=timedelta(days=s.retention_margin_days),
            batch_rows=s.retention_batch_rows,
            max_seconds=s.retention_max_seconds,
            finished_jobs_keep=timedelta(days=s.finished_jobs_keep_days),
            failed_jobs_keep=timedelta(days=s.failed_jobs_keep_days),
            unsubscribe_keep=timedelta(days=s.unsubscribe_keep_days),
            notifications_keep=timedelta(days=s.notifications_keep_days),
        )

    def final_before(self, now: datetime) -> datetime:
        """A campaign whose final report push was due before this is purged (its schedule over)."""
        return now - self.margin

    def unsubscribe_sent_after(self, now: datetime) -> datetime:
        """A purged message sent after this still unsubscribes its recipient from its link."""
        return now - self.unsubscribe_keep

    def prune_before(self, table: str, now: datetime) -> datetime:
        """Rows of a pruned table (store.retention.PRUNED_TABLES) older than this go."""
        keep = {
            "unsubscribe_keys": self.unsubscribe_keep,
            "notifications": self.notifications_keep,
            "preference_outbox": self.sent_preferences_keep,
        }[table]
        return now - keep

    def idle_before(self, now: datetime) -> datetime:
        """A campaign that never had a report schedule (ingest failed, wholly canceled) is purged
        once unchanged for the window and the margin, as if it had been reported."""
        return now - self.window - self.margin


def job_age_hours(keep: timedelta, now: datetime, db_now: datetime) -> int:
    """The `nb_hours` to give procrastinate's cleanup so it removes jobs finished before
    `now - keep`. Its query counts age from the database's clock, while our runs take `now` as a
    parameter (the same instant in production, a simulated day in tests): shift by the difference."""
    hours = (keep + (db_now - now)) / timedelta(hours=1)
    return max(0, math.ceil(hours))
