import asyncio

import pytest

from optibridge.optimove.errors import OptimoveResponseError
from optibridge.optimove.paging import is_last_page, iterate_pages


def test_by_default_only_an_empty_page_ends_the_data() -> None:
    assert is_last_page(0, 100)
    assert not is_last_page(99, 100)
    assert not is_last_page(100, 100)
    assert is_last_page(99, 100, stop_on_short_page=True)
    assert is_last_page(0, 100, stop_on_short_page=True)
    assert not is_last_page(100, 100, stop_on_short_page=True)


class FakeSource:
    """`total` rows served `cap` at a time at most (a server-side page cap)."""

    def __init__(self, total: int, cap: int | None = None) -> None:
        self.total = total
        self.cap = cap
        self.calls: list[tuple[int, int]] = []

    async def fetch(self, skip: int, top: int) -> list[int]:
        self.calls.append((skip, top))
        await asyncio.sleep(0)
        top = min(top, self.cap) if self.cap else top
        return list(range(skip, min(self.total, skip + top)))


async def collect(source: FakeSource, page_size: int, **kw: object) -> list[list[int]]:
    return [p async for p in iterate_pages(source.fetch, call="X", page_size=page_size, **kw)]  # type: ignore[arg-type]


@pytest.mark.parametrize("prefetch", [True, False])
async def test_by_default_a_short_page_is_followed_by_one_more_request(prefetch: bool) -> None:
    source = FakeSource(250)
    pages = await collect(source, 100, prefetch=prefetch)
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [r for p in pages for r in p] == list(range(250))
    assert source.calls == [(0, 100), (100, 100), (200, 100), (250, 100)]


@pytest.mark.parametrize("prefetch", [True, False])
async def test_the_short_page_rule_stops_without_asking_again(prefetch: bool) -> None:
    source = FakeSource(250)
    pages = await collect(source, 100, prefetch=prefetch, stop_on_short_page=True)
    assert [len(p) for p in pages] == [100, 100, 50]
    assert source.calls == [(0, 100), (100, 100), (200, 100)]


async def test_exact_multiple_needs_one_empty_page_to_end() -> None:
    source = FakeSource(300)
    pages = await collect(source, 100)
    assert [len(p) for p in pages] == [100, 100, 100]
    assert source.calls[-1] == (300, 100)


async def test_empty_source_yields_no_pages() -> None:
    source = FakeSource(0)
    assert await collect(source, 100) == []
    assert source.calls == [(0, 100)]


async def test_start_skip_resumes_mid_campaign() -> None:
    source = FakeSource(250)
    pages = await collect(source, 100, start_skip=150)
    assert [r for p in pages for r in p] == list(range(150, 250))


async def test_by_default_a_server_cap_below_top_loses_nothing() -> None:
    """If the server caps pages below $top, only the empty-page rule reads everything."""
    capped = FakeSource(250, cap=60)
    assert sum(map(len, await collect(capped, 100))) == 250
    capped_short = FakeSource(250, cap=60)
    assert sum(map(len, await collect(capped_short, 100, stop_on_short_page=True))) == 60  # its risk


async def test_paging_is_bounded_by_max_pages() -> None:
    source = FakeSource(10_000)
    with pytest.raises(OptimoveResponseError, match="did not end within 3 pages"):
        await collect(source, 100, max_pages=3)


async def test_breaking_out_early_cancels_the_prefetched_page() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def fetch(skip: int, top: int) -> list[int]:
        if skip == 0:
            return list(range(top))
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return []

    pages = iterate_pages(fetch, call="X", page_size=10)
    async for _ in pages:
        await asyncio.wait_for(started.wait(), 1)  # the next page is being fetched already
        break
    await pages.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(cancelled.wait(), 1)
