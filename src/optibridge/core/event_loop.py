"""The event loop every long-running process of ours runs on: uvloop when present.

The send path and the sinks are mostly event-loop and socket work. OPTIBRIDGE_EVENT_LOOP=asyncio
turns uvloop off (to compare, or where it misbehaves).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

try:
    import uvloop  # a dependency of uvicorn[standard]
except ImportError:  # pragma: no cover - platforms without uvloop
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")


def run_on_event_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on uvloop (or asyncio, with OPTIBRIDGE_EVENT_LOOP=asyncio)."""
    if uvloop is not None and os.environ.get("OPTIBRIDGE_EVENT_LOOP", "uvloop") == "uvloop":
        return uvloop.run(coro)
    return asyncio.run(coro)
