"""The send fence (delivery/fence.py): when a worker's right to send runs out, and what happens to
a send in flight then. The clock and the heartbeat reader are injected; no database here (the
real one: tests/integration/delivery/test_delivery_fence.py)."""

from __future__ import annotations

import asyncio

import pytest

from optibridge.delivery import fence
from optibridge.delivery.fence import MARGIN_S, Lease, fenced, lease_end


def test_the_lease_ends_a_margin_before_the_others_may_judge_the_worker_dead() -> None:
    # Heartbeat 3 s old when the probe went out at t=100: dead to the others at 117, fence at 112.
    assert lease_end(100.0, 3.0, dead_after_s=20.0) == 100.0 - 3.0 + 20.0 - MARGIN_S
    # A fresher heartbeat grants more; no row (pruned as dead) grants nothing.
    assert lease_end(100.0, 0.0, dead_after_s=20.0) > lease_end(100.0, 3.0, dead_after_s=20.0)
    assert lease_end(100.0, None, dead_after_s=20.0) == 100.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_probes_renew_the_lease_and_an_unanswered_probe_does_not() -> None:
    clock = FakeClock()
    ages: list[float | BaseException | None] = [1.0, TimeoutError(), 25.0, None]

    async def age_of(worker: str) -> float | None:
        assert worker == "7"
        answer = ages.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    lease = Lease("7", age_of, dead_after_s=20.0, clock=clock)
    assert lease.open()  # granted at start: the job was just fetched under this id
    await lease.probe()  # heartbeat 1 s old: open until 1000 - 1 + 20 - 5
    assert lease.ends_at == 1014.0
    clock.now = 1010.0
    await lease.probe()  # the database does not answer: nothing renewed
    assert lease.ends_at == 1014.0
    assert lease.open()
    clock.now = 1014.5
    assert not lease.open()  # ran out
    await lease.probe()  # an old heartbeat (25 s) never shortens what a fresh one granted...
    assert lease.ends_at == 1014.0
    await lease.probe()  # ...but a missing row (the others judged it dead) closes at once
    assert lease.ends_at == 1014.5
    assert not lease.open()


async def test_the_first_reading_replaces_the_start_grant_even_when_shorter() -> None:
    clock = FakeClock()

    async def age_of(worker: str) -> float | None:
        return 14.0  # the heartbeat was already old when the job started

    lease = Lease("7", age_of, dead_after_s=20.0, clock=clock)
    assert lease.ends_at == 1010.0  # the guess: 20 - 5 (one heartbeat period) - 5 (margin)
    await lease.probe()
    assert lease.ends_at == 1001.0  # 1000 - 14 + 20 - 5
    clock.now = 1001.5
    assert not lease.open()


async def test_a_send_in_flight_when_the_lease_runs_out_is_cancelled_and_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fence, "PROBE_EVERY_S", 0.05)
    clock = FakeClock()

    async def age_of(worker: str) -> float | None:
        return 0.0

    lease = Lease("7", age_of, dead_after_s=20.0, clock=clock)
    cancelled = asyncio.Event()

    async def stalled_send() -> str:  # a request on a cut link: no answer, ever
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "answered"

    async def run_out_soon() -> None:
        await asyncio.sleep(0.2)
        clock.now += 60.0  # a minute with no heartbeat reaching the database

    ticker = asyncio.create_task(run_out_soon())
    async with asyncio.timeout(10):
        answer = await fenced(lease, stalled_send(), lambda: "given up")
    await ticker
    assert answer == "given up"
    assert cancelled.is_set()  # the send itself was cancelled: its connection is closed


async def test_a_slow_answer_on_a_live_worker_is_never_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fence, "PROBE_EVERY_S", 0.05)
    clock = FakeClock()

    async def age_of(worker: str) -> float | None:
        return 0.0

    lease = Lease("7", age_of, dead_after_s=20.0, clock=clock)

    async def slow_send() -> str:
        for _ in range(10):  # 30 "seconds" of the injected clock: longer than any lease grant
            await asyncio.sleep(0.02)
            clock.now += 3.0
            await lease.probe()  # the heartbeat keeps reaching the database
        return "answered"

    assert await fenced(lease, slow_send(), lambda: "given up") == "answered"
    assert await fenced(None, slow_send(), lambda: "given up") == "answered"  # no lease: no fence
