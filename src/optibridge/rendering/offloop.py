"""Rendering off the event loop: a render is CPU work, so it runs in a thread of its own pool.

A render on the event loop stopped every request of every tenant for its duration (`/livez` did
not answer for 26 s). Renders, compiles and save-time trial renders run here instead. A thread
cannot be interrupted, so the bound on a render's time is cooperative (limits.Budget: every loop
iteration and filter call checks the deadline); the event loop only waits. Under the GIL a busy
render thread hands the interpreter back every switch interval (5 ms), and no single step of a
bounded render holds it long (every string or list is capped), so the loop stays responsive -
measured in tests/security/test_render_limits.py with `/livez` polled during a heavy render.

The pool is the renderer's own, so renders never queue behind (or hold up) the default executor,
which also serves DNS lookups.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from optibridge.rendering.errors import RenderLimitError

T = TypeVar("T")

RENDER_THREADS = 4
_pool = ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="optibridge-render")


async def in_render_thread(fn: Callable[[], T], *, backstop_s: float | None = None) -> T:
    """`fn()` in a render thread. With `backstop_s`, give up waiting after that long
    (RenderLimitError): the thread finishes on its own deadline, the caller need not wait for it."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    future = loop.run_in_executor(_pool, context.run, fn)
    if backstop_s is None:
        return await future
    try:
        return await asyncio.wait_for(future, backstop_s)
    except TimeoutError:
        raise RenderLimitError(f"render did not finish in {backstop_s:g} s", timed_out=True) from None
