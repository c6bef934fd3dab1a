"""When a message is sent: Optimove's UTC time, optionally moved to the customer's clock.

Two optional channel options (docs/send-times.md has worked examples):

- `local_send_time`: Optimove schedules in the brand's time zone (`reference_timezone`, default UTC)
  and sends the UTC instant. With this on, the same *wall-clock* time is kept in each customer's own
  zone (taken from the attribute named by `timezone_attribute`): 10:00 Europe/London for the brand
  becomes 10:00 America/New_York for a customer there. A missing or unknown zone keeps Optimove's
  time.
- `quiet_hours` ("21:00-08:00", in the customer's zone when known, else the reference zone): a send
  time inside the window moves to its end.

Pure functions; the caller caches by (scheduled time, zone) since many customers share both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from optibridge.core.quiet_hours import QuietHours


@dataclass(frozen=True, slots=True)
class SendTimePolicy:
    local_send_time: bool = False
    reference_zone: tzinfo = UTC
    quiet_hours: QuietHours | None = None

    @property
    def is_identity(self) -> bool:
        return not self.local_send_time and self.quiet_hours is None


@functools.lru_cache(maxsize=1024)
def zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None


def send_time(scheduled_utc: datetime, customer_zone: str | None, policy: SendTimePolicy) -> datetime:
    """The UTC instant to send at."""
    if policy.is_identity:
        return scheduled_utc
    tz = zone(customer_zone)
    if policy.local_send_time and tz is not None:
        wall = scheduled_utc.astimezone(policy.reference_zone).replace(tzinfo=None)
        local = _localize(wall, tz)
    else:
        local = scheduled_utc.astimezone(tz or policy.reference_zone)
    if policy.quiet_hours is not None:
        local = policy.quiet_hours.release(local)
        local = _localize(local.replace(tzinfo=None), local.tzinfo or UTC)
    return local.astimezone(UTC)


def _localize(wall: datetime, tz: tzinfo) -> datetime:
    """`wall` read in `tz`; a wall time skipped by a DST jump moves forward past the gap."""
    local = wall.replace(tzinfo=tz, fold=0)
    round_trip = local.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if round_trip != wall:  # inside a spring-forward gap: that wall time does not exist
        return (local.astimezone(UTC)).astimezone(tz)
    return local
