import pytest
from hypothesis import given
from hypothesis import strategies as st

from optibridge.optimove.clock import ManualClock
from optibridge.optimove.ratelimit import (
    RateLimit,
    RateLimiterRegistry,
    SlidingWindowScheduler,
    wait_for_slot,
)


def test_first_requests_up_to_the_limit_go_at_once_then_wait_for_the_window() -> None:
    scheduler = SlidingWindowScheduler(RateLimit(3, 10.0))
    assert [scheduler.reserve(100.0) for _ in range(3)] == [100.0, 100.0, 100.0]
    assert scheduler.reserve(100.0) == 110.0
    assert scheduler.reserve(100.0) == 110.0


def test_window_slides_rather_than_resetting_on_fixed_boundaries() -> None:
    scheduler = SlidingWindowScheduler(RateLimit(2, 10.0))
    assert scheduler.reserve(0.0) == 0.0
    assert scheduler.reserve(6.0) == 6.0
    # A fixed window would reopen at 10; the sliding one frees one slot at 10, the next at 16.
    assert scheduler.reserve(7.0) == 10.0
    assert scheduler.reserve(7.0) == 16.0


def test_waiting_callers_are_served_in_arrival_order() -> None:
    scheduler = SlidingWindowScheduler(RateLimit(1, 1.0))
    slots = [scheduler.reserve(0.0) for _ in range(5)]
    assert slots == sorted(slots) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert scheduler.pending(0.5) == 4


@given(
    st.integers(1, 6),
    st.floats(0.1, 20.0),
    st.lists(st.floats(0.0, 100.0), min_size=1, max_size=80),
)
def test_no_window_ever_holds_more_than_the_limit(limit: int, window: float, gaps: list[float]) -> None:
    scheduler = SlidingWindowScheduler(RateLimit(limit, window))
    now, sent = 0.0, []
    for gap in gaps:
        now += gap / 10
        slot = scheduler.reserve(now)
        assert slot >= now
        sent.append(slot)
    for i, start in enumerate(sent):
        in_window = [t for t in sent[i:] if t < start + window]
        assert len(in_window) <= limit


def test_registry_shares_one_budget_per_key_and_separates_other_keys() -> None:
    registry = RateLimiterRegistry()
    limit = RateLimit(50, 10.0)
    assert registry.scheduler("key:a", limit) is registry.scheduler("key:a", limit)
    assert registry.scheduler("key:a", limit) is not registry.scheduler("key:b", limit)


def test_rate_limit_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimit(0, 10.0)


async def test_wait_for_slot_sleeps_on_the_injected_clock_only_when_needed() -> None:
    clock = ManualClock()
    scheduler = SlidingWindowScheduler(RateLimit(2, 5.0))
    waits = [await wait_for_slot(scheduler, clock) for _ in range(4)]
    assert waits == [0.0, 0.0, 5.0, 0.0]
    assert clock.sleeps == [5.0]
