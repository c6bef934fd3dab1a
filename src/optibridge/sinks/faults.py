"""Fault windows shared by the sinks: "for the next N" and/or "for T seconds"."""

from __future__ import annotations

import time


class Window:
    """Active for `count` hits and/or until `seconds` have passed (whichever ends first).

    With neither, it stays active until cleared.
    """

    __slots__ = ("_deadline", "_remaining")

    def __init__(self, *, count: int | None = None, seconds: float | None = None) -> None:
        self._remaining = count
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def hit(self) -> bool:
        """True if the fault applies to this request/message (and counts it)."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return False
        if self._remaining is not None:
            if self._remaining <= 0:
                return False
            self._remaining -= 1
        return True

    @property
    def expired(self) -> bool:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return True
        return self._remaining is not None and self._remaining <= 0
