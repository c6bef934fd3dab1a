"""A daily window in which nothing is sent ("21:00-08:00"), as the config validates it and the
send-time policy (optibridge.intake.schedule) applies it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        try:
            a, b = (part.strip() for part in text.split("-"))
            start, end = time.fromisoformat(a), time.fromisoformat(b)
        except ValueError:
            raise ValueError(f"quiet hours must look like 21:00-08:00, not {text!r}") from None
        if start == end:
            raise ValueError("quiet hours start and end must differ")
        return cls(start, end)

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # the window spans midnight

    def release(self, local: datetime) -> datetime:
        """The first moment at or after `local` outside the window (same zone)."""
        if not self.contains(local.timetz().replace(tzinfo=None)):
            return local
        day = local.date()
        if self.start > self.end and local.time() >= self.start:
            day += timedelta(days=1)
        naive = datetime.combine(day, self.end)
        return naive.replace(tzinfo=local.tzinfo)
