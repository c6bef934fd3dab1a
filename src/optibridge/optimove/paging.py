"""`$top`/`$skip` paging: the stop rule (pure) and the page iterator.

Optimove gives no total count and no continuation token (optimove-api.md §3.4): a client stops
at an empty page or at one shorter than it asked for. The second rule saves a request per
campaign, but ends early, silently, if the server caps pages below the requested `$top` (the
official maximum is UNCONFIRMED); so the default (`stop_on_short_page=False`, setting
`optimove_page_end = "empty"`) goes on to the empty page.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sized
from typing import TypeVar

from optibridge.optimove.errors import OptimoveResponseError

P = TypeVar("P", bound=Sized)


def is_last_page(row_count: int, requested: int, *, stop_on_short_page: bool = False) -> bool:
    """Whether a page of `row_count` rows, asked for with `$top=requested`, ends the data."""
    if row_count == 0:
        return True
    return stop_on_short_page and row_count < requested


async def iterate_pages(
    fetch: Callable[[int, int], Awaitable[P]],
    *,
    call: str,
    page_size: int,
    start_skip: int = 0,
    max_pages: int = 100_000,
    stop_on_short_page: bool = False,
    prefetch: bool = True,
) -> AsyncIterator[P]:
    """Yield non-empty pages from `fetch(skip, top)` until the stop rule says the data ended.

    With `prefetch`, the next page is requested before the current one is handed over, so the
    server prepares page k+1 while the caller processes page k. Memory stays at two pages.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    skip = start_skip
    pending: asyncio.Future[P] | None = None
    try:
        current = await fetch(skip, page_size)
        for _ in range(max_pages):
            count = len(current)
            last = is_last_page(count, page_size, stop_on_short_page=stop_on_short_page)
            if not last and prefetch:
                pending = asyncio.ensure_future(fetch(skip + count, page_size))
            if count:
                yield current
            if last:
                return
            skip += count
            if pending is not None:
                current, pending = await pending, None
            else:
                current = await fetch(skip, page_size)
        raise OptimoveResponseError(
            f"Optimove {call}: paging did not end within {max_pages} pages", call=call
        )
    finally:
        if pending is not None:
            # Not awaited: awaiting here could swallow the caller's own cancellation. The
            # callback only marks a late exception as seen, so asyncio does not log it.
            pending.cancel()
            pending.add_done_callback(_consume)


def _consume(future: asyncio.Future[P]) -> None:
    if not future.cancelled():
        future.exception()
