"""The emulator's side of rate limiting: a sliding-window counter that refuses (pure)."""

from __future__ import annotations

from collections import deque


class SlidingWindowCounter:
    """Admits at most `limit` hits in any `window_s` seconds; refused hits are not counted."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: deque[float] = deque()

    def hit(self, now: float) -> float | None:
        """Record a hit at `now` and return None, or return seconds until one would be admitted."""
        hits = self._hits
        horizon = now - self.window_s
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(0.0, hits[0] + self.window_s - now)
        hits.append(now)
        return None
