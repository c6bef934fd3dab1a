"""send_many's engine: bounded concurrency, results in input order, errors not swallowed."""

from __future__ import annotations

import asyncio

import pytest

from optibridge.channels.base import OutboundMessage, Outcome, SendResult, send_bounded


def messages(count: int) -> list[OutboundMessage]:
    return [OutboundMessage(f"m{n}", "t", 1, f"c{n}", 1, f"to{n}", "b") for n in range(count)]


async def test_results_come_back_in_input_order_within_the_limit() -> None:
    in_flight = peak = 0

    async def send(message: OutboundMessage) -> SendResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001 * (hash(message.message_id) % 3))  # finish out of order
        in_flight -= 1
        return SendResult(Outcome.SENT, provider_message_id=message.message_id)

    batch = messages(50)
    results = await send_bounded(send, batch, 4)
    assert [r.provider_message_id for r in results] == [m.message_id for m in batch]
    assert peak == 4


async def test_empty_and_single_worker() -> None:
    async def send(message: OutboundMessage) -> SendResult:
        return SendResult(Outcome.SENT)

    assert await send_bounded(send, [], 16) == []
    assert len(await send_bounded(send, messages(3), 1)) == 3


async def test_a_bug_in_send_propagates_and_stops_the_other_workers() -> None:
    started: list[str] = []

    async def send(message: OutboundMessage) -> SendResult:
        started.append(message.message_id)
        if message.message_id == "m2":
            raise RuntimeError("bug")
        await asyncio.sleep(0.01)
        return SendResult(Outcome.SENT)

    with pytest.raises(RuntimeError, match="bug"):
        await send_bounded(send, messages(100), 4)
    await asyncio.sleep(0.05)
    assert len(started) < 100
