"""Delivery decisions without I/O: state transitions, provider health and failover, rate limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.core.errors import ConfigError
from optibridge.delivery.providers import ChannelProviders, TokenBucket, provider_list
from optibridge.delivery.transitions import RetryPolicy, after_send

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base_delay_s=5, max_delay_s=60, max_lateness=timedelta(hours=1))


def decide(result: SendResult, attempts: int = 1, late_s: int = 0) -> tuple[str, int, datetime | None]:
    t = after_send(result, attempts=attempts, send_at=NOW - timedelta(seconds=late_s), now=NOW, policy=POLICY)
    return t.state, t.attempts_delta, t.send_at


def test_sent_keeps_the_provider_id() -> None:
    t = after_send(SendResult(Outcome.SENT, "SM1"), attempts=1, send_at=NOW, now=NOW, policy=POLICY)
    assert (t.state, t.provider_message_id) == ("sent", "SM1")


def test_a_lost_answer_follows_the_channels_uncertain_policy() -> None:
    lost = SendResult(Outcome.TRANSIENT, reason="no answer after sending (timeout)", uncertain=True)
    assert decide(lost) == ("pending", 0, NOW + timedelta(seconds=5))  # resend: at least once
    at_most_once = RetryPolicy(assume_sent_when_uncertain=True)
    t = after_send(lost, attempts=1, send_at=NOW, now=NOW, policy=at_most_once)
    assert (t.state, t.reason) == (
        "sent",
        "assumed sent (uncertain policy): no answer after sending (timeout)",
    )
    # a failure known to have sent nothing is retried whatever the policy
    refused = SendResult(Outcome.TRANSIENT, reason="connection error: refused")
    assert after_send(refused, attempts=1, send_at=NOW, now=NOW, policy=at_most_once).state == "pending"


def test_throttling_waits_and_gives_the_attempt_back() -> None:
    assert decide(SendResult(Outcome.THROTTLED, retry_after=30), attempts=3) == (
        "pending", -1, NOW + timedelta(seconds=30)
    )  # fmt: skip
    assert decide(SendResult(Outcome.THROTTLED))[2] == NOW + timedelta(seconds=5)


def test_transient_failures_back_off_then_give_up() -> None:
    assert decide(SendResult(Outcome.TRANSIENT), attempts=1) == ("pending", 0, NOW + timedelta(seconds=5))
    assert decide(SendResult(Outcome.TRANSIENT), attempts=2)[2] == NOW + timedelta(seconds=10)
    assert decide(SendResult(Outcome.TRANSIENT, retry_after=40), attempts=1)[2] == NOW + timedelta(seconds=40)
    state, _, _ = decide(SendResult(Outcome.TRANSIENT, reason="503"), attempts=3)
    assert state == "failed"


def test_permanent_is_final_and_lateness_expires() -> None:
    assert decide(SendResult(Outcome.PERMANENT, reason="550"))[0] == "failed"
    assert decide(SendResult(Outcome.THROTTLED), late_s=3601)[0] == "expired"
    assert decide(SendResult(Outcome.TRANSIENT), late_s=3601)[0] == "expired"
    assert decide(SendResult(Outcome.SENT), late_s=99999)[0] == "sent"


class Fake:
    kind = "email"

    def __init__(self, name: str) -> None:
        self.name = name

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(Outcome.SENT)

    async def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return [SendResult(Outcome.SENT) for _ in messages]


def test_a_troubled_provider_is_benched_traffic_moves_and_comes_back() -> None:
    cp = ChannelProviders([Fake("main"), Fake("backup")])
    ok = [SendResult(Outcome.SENT)] * 4
    bad = [SendResult(Outcome.THROTTLED)] * 3 + [SendResult(Outcome.SENT)]
    assert cp.pick(now=0)[0] == 0  # type: ignore[index]
    assert cp.report(0, bad, now=0) is True
    assert cp.pick(now=1)[0] == 1  # type: ignore[index]
    assert cp.pick(now=2.1)[0] == 0  # type: ignore[index]  # the 2 s bench is over
    assert cp.report(0, bad, now=2.1) is True  # failing again: 4 s this time
    assert cp.pick(now=5.0)[0] == 1  # type: ignore[index]
    assert cp.report(0, ok, now=6.2) is False
    assert cp.health[0].failures == 0
    cp.report(1, bad, now=6.2)
    cp.report(0, bad, now=6.2)
    assert cp.pick(now=6.3) is None
    assert cp.seconds_until_usable(now=6.3) == pytest.approx(1.9)


def test_half_troubled_batches_do_not_bench() -> None:
    cp = ChannelProviders([Fake("main")])
    assert cp.report(0, [SendResult(Outcome.TRANSIENT), SendResult(Outcome.SENT)], now=0) is False


def test_failover_list_shape_is_checked() -> None:
    assert provider_list({"type": "smtp"}) == [{"type": "smtp"}]
    assert provider_list({"providers": [{"type": "a"}, {"type": "b"}]}) == [{"type": "a"}, {"type": "b"}]
    for bad in ({"providers": []}, {"providers": "x"}, {"providers": [1]}):
        with pytest.raises(ConfigError, match="non-empty list"):
            provider_list(bad)


async def test_token_bucket_paces_to_the_rate() -> None:
    bucket = TokenBucket(200.0)
    started = time.monotonic()
    for _ in range(5):
        await bucket.take(100)  # 500 messages at 200/s: the first 200 are a burst
    elapsed = time.monotonic() - started
    assert 1.2 <= elapsed <= 4.0
    await asyncio.sleep(0)
