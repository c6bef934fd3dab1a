"""Auth renewal, rate limits, retries, timeouts and errors, against the emulator."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from optibridge.emulator import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.optimove import (
    ApiKeyAuth,
    LoginAuth,
    ManualClock,
    OptimoveAuthError,
    OptimoveBadRequestError,
    OptimoveClient,
    OptimoveClientConfig,
    OptimoveRateLimitedError,
    OptimoveResponseError,
    OptimoveServerError,
    OptimoveTimeoutError,
    OptimoveTransportError,
    RateLimit,
    RateLimiterRegistry,
    RetryPolicy,
    Timeouts,
)

MakeClient = Callable[..., OptimoveClient]


async def statuses(emulator: RunningEmulator, function: str) -> list[int]:
    return [r["status"] for r in await emulator.control.requests(function=function)]


# -- login tokens ---------------------------------------------------------------------------


async def test_logs_in_once_then_reuses_the_token(
    emulator: RunningEmulator, make_client: MakeClient, login_auth: LoginAuth
) -> None:
    client = make_client(login_auth)
    for _ in range(3):
        await client.get_execution_channels()
    assert client.logins == 1
    assert await statuses(emulator, "Login") == [200]


async def test_logs_in_again_on_403_token_expired_and_repeats_the_call(
    emulator: RunningEmulator, make_client: MakeClient, login_auth: LoginAuth
) -> None:
    client = make_client(login_auth, clock=ManualClock())  # the 1 login/s wait is virtual
    await client.get_execution_channels()
    await emulator.control.expire_tokens("t1")
    channels = await client.get_execution_channels()
    assert channels
    assert client.logins == 2
    assert await statuses(emulator, "GetExecutionChannels") == [200, 403, 200]
    assert client.retries == 0  # renewal is not a retry


async def test_logs_in_again_before_a_call_once_idle_for_the_ttl(
    emulator: RunningEmulator, make_client: MakeClient, login_auth: LoginAuth
) -> None:
    clock = ManualClock()
    client = make_client(login_auth, clock=clock, token_ttl_s=1200, token_refresh_margin_s=30)
    await client.get_execution_channels()
    clock.advance(1000)
    await client.get_execution_channels()  # idle 1000 s: token still good
    clock.advance(1000)
    await client.get_execution_channels()  # 1000 s since the last use, not since login
    assert client.logins == 1
    clock.advance(1171)
    await client.get_execution_channels()
    assert client.logins == 2
    assert 403 not in await statuses(emulator, "GetExecutionChannels")


async def test_concurrent_calls_share_a_single_login(make_client: MakeClient, login_auth: LoginAuth) -> None:
    client = make_client(login_auth)
    await asyncio.gather(*(client.get_execution_channels() for _ in range(10)))
    assert client.logins == 1


async def test_never_logs_in_more_than_once_per_second(
    emulator: RunningEmulator, make_client: MakeClient, login_auth: LoginAuth
) -> None:
    clock = ManualClock()
    client = make_client(login_auth, clock=clock)
    await client.get_execution_channels()
    await emulator.control.expire_tokens("t1")
    await client.get_execution_channels()
    assert client.logins == 2
    assert clock.sleeps == [pytest.approx(1.0)]


async def test_bad_credentials_fail_clearly_without_retrying(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    with pytest.raises(OptimoveAuthError) as error:
        await make_client(LoginAuth("user-1", "wrong")).get_execution_channels()
    assert (error.value.call, error.value.status, error.value.retryable) == ("Login", 401, False)
    assert "Unauthorized" in error.value.body_excerpt
    assert "Unauthorized" not in str(error.value)  # messages carry our words, never Optimove's body
    with pytest.raises(OptimoveAuthError) as key_error:
        await make_client(ApiKeyAuth("nope")).get_channel_templates(504)
    assert key_error.value.call == "GetChannelTemplates"
    assert key_error.value.status == 401
    assert await statuses(emulator, "GetChannelTemplates") == [401]


# -- rate limits ----------------------------------------------------------------------------


async def test_client_waits_for_the_sliding_window_instead_of_hitting_429(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    clock = ManualClock()
    client = make_client(clock=clock, rate_limit=RateLimit(3, 10.0))
    for _ in range(7):
        await client.get_execution_channels()
    assert clock.sleeps == [pytest.approx(10.0), pytest.approx(10.0)]
    assert await statuses(emulator, "GetExecutionChannels") == [200] * 7


async def test_clients_using_one_key_share_one_budget(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    clock, registry = ManualClock(), RateLimiterRegistry()
    limit = RateLimit(2, 10.0)
    first = make_client(clock=clock, limiters=registry, rate_limit=limit)
    second = make_client(clock=clock, limiters=registry, rate_limit=limit)
    other_key = make_client(ApiKeyAuth("key-2"), clock=clock, limiters=registry, rate_limit=limit)
    await emulator.control.create_tenant("t2", api_key="key-2")
    await first.get_execution_channels()
    await first.get_execution_channels()
    await other_key.get_execution_channels()
    assert clock.sleeps == []
    await second.get_execution_channels()
    assert clock.sleeps == [pytest.approx(10.0)]


async def test_429_from_the_server_is_retried_after_its_retry_after() -> None:
    clock = ManualClock()  # shared: the client's waits move the emulator's window too
    config = EmulatorConfig(rate_limit_requests=2, rate_limit_window_s=10)
    async with running_emulator(config, clock=clock) as emu:
        await emu.control.create_tenant("t1", api_key="key-1")
        client_config = OptimoveClientConfig(
            emu.base_url, ApiKeyAuth("key-1"), rate_limit=None,
            retry=RetryPolicy(max_attempts=3, initial_delay_s=0.01),
        )  # fmt: skip
        async with OptimoveClient(client_config, clock=clock, limiters=RateLimiterRegistry()) as client:
            for _ in range(3):
                await client.get_execution_channels()
        assert [r["status"] for r in await emu.control.requests()] == [200, 200, 429, 200]
        assert clock.sleeps[0] >= 10.0


async def test_429_storm_is_ridden_out_honouring_retry_after(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    clock = ManualClock()
    await emulator.control.rate_limit_storm(requests=2, retry_after_s=5)
    await make_client(clock=clock).get_execution_channels()
    assert len(clock.sleeps) == 2
    assert all(s >= 5.0 for s in clock.sleeps)


async def test_persistent_429_gives_a_retryable_rate_limited_error(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.rate_limit_storm(requests=10, retry_after_s=0)
    with pytest.raises(OptimoveRateLimitedError) as error:
        await make_client(clock=ManualClock()).get_execution_channels()
    assert error.value.retryable
    assert error.value.attempts == 4


# -- retries, timeouts, errors --------------------------------------------------------------


async def test_server_errors_are_retried_until_success(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.add_fault(function="GetChannelTemplates", status_codes=[500, 503], times=2)
    client = make_client()
    assert await client.get_channel_templates(504) == []
    assert len(await statuses(emulator, "GetChannelTemplates")) == 3
    assert client.retries == 2


async def test_writes_are_retried_too(emulator: RunningEmulator, make_client: MakeClient) -> None:
    await emulator.control.add_fault(function="RegisterEventListener", status_codes=[502], times=1)
    await make_client().register_event_listener(1, "http://127.0.0.1:9/x")
    assert len(await emulator.control.listeners("t1")) == 1


async def test_retries_stop_at_max_attempts_with_a_retryable_server_error(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.add_fault(function="GetChannelTemplates", status_codes=[500])
    with pytest.raises(OptimoveServerError) as error:
        await make_client().get_channel_templates(504)
    assert (error.value.status, error.value.attempts, error.value.retryable) == (500, 4, True)
    assert str(error.value) == "Optimove GetChannelTemplates failed: HTTP 500 (server error) after 4 attempts"
    assert "injected fault" in error.value.body_excerpt


async def test_a_hung_request_times_out_and_the_retry_succeeds(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.add_fault(function="GetChannelTemplates", hang_s=3, times=1)
    client = make_client(timeouts=Timeouts(total_s=0.2, connect_s=0.2))
    assert await client.get_channel_templates(504) == []
    assert client.retries == 1


async def test_repeated_timeouts_give_a_retryable_timeout_error(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.add_fault(function="GetChannelTemplates", hang_s=3)
    client = make_client(
        timeouts=Timeouts(total_s=0.15, connect_s=0.15),
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0.01),
    )
    with pytest.raises(OptimoveTimeoutError) as error:
        await client.get_channel_templates(504)
    assert error.value.retryable
    assert error.value.call == "GetChannelTemplates"


async def test_bad_request_is_not_retried_and_says_why(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(OptimoveBadRequestError) as error:
        await client.get_campaign_details(404)
    assert (error.value.status, error.value.retryable, error.value.attempts) == (400, False, 1)
    assert "GetCampaignDetails" in str(error.value)
    assert "unknown CampaignID" in error.value.body_excerpt
    assert "unknown CampaignID" not in str(error.value)
    assert await statuses(emulator, "GetCampaignDetails") == [400]


async def test_connection_refused_is_a_retryable_transport_error(make_client: MakeClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    client = OptimoveClient(
        OptimoveClientConfig(
            f"http://127.0.0.1:{port}", ApiKeyAuth("k"), rate_limit=None,
            retry=RetryPolicy(max_attempts=2, initial_delay_s=0.01),
        ),
        clock=ManualClock(),
    )  # fmt: skip
    async with client:
        with pytest.raises(OptimoveTransportError) as error:
            await client.get_execution_channels()
    assert error.value.retryable
    assert error.value.attempts == 2


async def test_an_unexpected_body_is_a_response_error(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    # An injected "200" answers with an error object where a list is expected.
    await emulator.control.add_fault(function="GetChannelTemplates", status_codes=[200], times=1)
    with pytest.raises(OptimoveResponseError) as error:
        await make_client().get_channel_templates(504)
    assert error.value.call == "GetChannelTemplates"
    assert not error.value.retryable
