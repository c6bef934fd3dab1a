"""Sends in flight (issue 15): the defaults, slice loops per job, and back-pressure from throttles."""

from __future__ import annotations

from typing import Any

import pytest

from optibridge.channels import base
from optibridge.core.config import ChannelOptions
from optibridge.delivery import dispatcher as dsp
from optibridge.delivery.providers import ChannelProviders
from optibridge.delivery.registry import Channel
from optibridge.delivery.transitions import RetryPolicy


def channel(**options: Any) -> Channel:
    return Channel(
        tenant_id="t", channel_id=1, name="sms", kind="sms", options=ChannelOptions(**options),
        providers=ChannelProviders([]), bucket=None, retry=RetryPolicy(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("options", "in_flight", "loops"),
    [
        ({}, 512, 4),  # no rate: 512; a default slice is 64 x 4 = 256; two more to overlap
        ({"rate_per_s": 1000}, 300, 4),  # rate x 0.3 s
        ({"rate_per_s": 10}, 64, 3),  # at least one chunk
        ({"in_flight": 40, "rate_per_s": 1000}, 40, 1),  # the option wins
        ({"in_flight": 8192, "chunk": 10, "claim_chunks": 1}, 8192, 8),  # at most 8 slice loops
    ],
)
def test_in_flight_defaults_and_slice_loops(options: dict[str, Any], in_flight: int, loops: int) -> None:
    ch = channel(**options)
    assert dsp.in_flight(ch) == in_flight
    assert dsp.slice_loops(ch) == loops
    assert dsp.slice_size(ch) == ch.chunk * ch.options.claim_chunks  # independent of in_flight


def results(*outcomes: base.Outcome) -> list[base.SendResult]:
    return [base.SendResult(o) for o in outcomes]


def test_throttles_halve_the_window_and_clean_chunks_reopen_it() -> None:
    providers = ChannelProviders([])
    limit, chunk = 512, 64
    assert providers.in_flight(limit, chunk) == limit
    providers.pace(results(base.Outcome.SENT, base.Outcome.THROTTLED), limit, chunk)
    assert providers.in_flight(limit, chunk) == 256
    providers.pace(results(base.Outcome.THROTTLED), limit, chunk)
    providers.pace(results(base.Outcome.THROTTLED), limit, chunk)
    providers.pace(results(base.Outcome.THROTTLED), limit, chunk)
    assert providers.in_flight(limit, chunk) == chunk  # never under one chunk
    for _ in range(20):
        providers.pace(results(base.Outcome.SENT), limit, chunk)
    assert providers.in_flight(limit, chunk) == limit
    assert providers.window is None


class _Named:
    name = "p"


def test_a_provider_is_proven_by_a_clean_batch_and_loses_it_when_troubled() -> None:
    providers = ChannelProviders([_Named()])  # type: ignore[list-item]
    assert not providers.proven(0)
    providers.report(0, results(base.Outcome.SENT), now=0.0)
    assert providers.proven(0)
    providers.report(0, results(base.Outcome.TRANSIENT, base.Outcome.TRANSIENT), now=0.0)
    assert not providers.proven(0)
