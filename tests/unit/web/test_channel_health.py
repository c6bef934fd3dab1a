"""Channel health's pure parts: benched providers at a time, the in-flight limit of a channel, the
error rate."""

from __future__ import annotations

from typing import Any

from optibridge.channels.base import Outcome, SendResult
from optibridge.delivery.providers import ChannelProviders
from optibridge.store.campaign_story import ChannelActivity, ChannelLimits
from optibridge.web.dashboard.health import benches, in_flight_limit, summarise


class FakeProvider:
    def __init__(self, name: str) -> None:
        self.name = name

    async def close(self) -> None:
        return None


def providers(*names: str) -> ChannelProviders:
    fakes: list[Any] = [FakeProvider(n) for n in names]
    return ChannelProviders(fakes)


def test_a_provider_benched_by_a_bad_batch_is_listed_until_its_bench_is_over() -> None:
    p = providers("smtp-a", "smtp-b")
    assert p.report(0, [SendResult(Outcome.THROTTLED)] * 3, now=100.0)
    benched = benches(p, 100.5)
    assert [(b.provider, b.seconds_left, b.failures) for b in benched] == [("smtp-a", 1.5, 1)]
    assert benches(p, 102.0) == []  # BENCH_BASE_S = 2 s after the first bad batch


def test_in_flight_limit_is_lanes_times_claim_chunks_times_chunk_per_worker_process() -> None:
    assert in_flight_limit({}, workers=1) == (2 * 4 * 64, None)
    assert in_flight_limit({"lanes": 3, "chunk": 10, "claim_chunks": 2, "rate_per_s": 50}, workers=4) == (
        240,
        200.0,
    )
    assert in_flight_limit({}, workers=0) == (512, None)  # serve --workers 0: counted as one process
    assert in_flight_limit({"lanes": "many"}, workers=1) == (512, None)  # unreadable: the defaults


def test_error_rate_is_failed_over_sent_plus_failed_and_none_without_traffic() -> None:
    channel = ChannelLimits("acme", "email", "email", 504, {})
    quiet = summarise(channel, None, 1, None)
    assert (quiet.sent, quiet.error_rate, quiet.in_flight_limit, quiet.benched) == (0, None, 512, None)
    busy = summarise(
        channel, ChannelActivity("acme", 504, 10, 94, 6, 1, 3, 0, [("550 user unknown", 6)]), 2, []
    )
    assert busy.error_rate == 6.0
    assert busy.in_flight_limit == 1024
    assert busy.benched == []
