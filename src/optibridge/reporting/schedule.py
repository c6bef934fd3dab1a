"""When a campaign's results are pushed to Optimove: pure rules over times passed in.

A push as soon as the campaign has finished sending (`finished_at`), then on a fixed grid every
`interval` after it, then a final push at `finished_at + window` (7 days by default), then never.
Pushes that run late (workers down) snap back to the grid instead of catching up one by one.
A failed push is retried after a backoff that starts at `retry_base` and doubles up to `interval`;
`give_up_after` past the final push, retrying stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from optibridge.core.reporting_settings import ReportingSettings


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    interval: timedelta = timedelta(hours=4)
    window: timedelta = timedelta(days=7)
    retry_base: timedelta = timedelta(minutes=5)
    give_up_after: timedelta = timedelta(hours=24)

    @classmethod
    def from_settings(cls, s: ReportingSettings) -> SchedulePolicy:
        return cls(
            interval=timedelta(hours=s.interval_hours),
            window=timedelta(days=s.window_days),
            retry_base=timedelta(seconds=s.retry_base_s),
            give_up_after=timedelta(hours=s.give_up_after_hours),
        )

    def final_at(self, finished_at: datetime) -> datetime:
        return finished_at + self.window


def next_push_after_success(
    finished_at: datetime, pushed_at: datetime, policy: SchedulePolicy
) -> datetime | None:
    """The next push after one that succeeded at `pushed_at`; None once the final push is done."""
    final = policy.final_at(finished_at)
    if pushed_at >= final:
        return None
    steps = int((pushed_at - finished_at) / policy.interval) + 1 if pushed_at >= finished_at else 1
    return min(finished_at + steps * policy.interval, final)


def next_push_after_failure(
    now: datetime, failures: int, finished_at: datetime, policy: SchedulePolicy
) -> datetime | None:
    """When to retry after `failures` consecutive failures (>= 1); None: give up."""
    if now >= policy.final_at(finished_at) + policy.give_up_after:
        return None
    delay: timedelta = min(policy.retry_base * (2 ** max(0, min(failures - 1, 20))), policy.interval)
    return now + delay
