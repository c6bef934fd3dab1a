"""The HTTP sink itself: its control endpoints, fault windows and the OAuth endpoint's checks."""

from __future__ import annotations

import asyncio
import base64

import aiohttp

from optibridge.sinks import HttpSink


async def test_stats_and_reset_endpoints(http_sink: HttpSink) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(f"{http_sink.base_url}/webhook/a", json={"n": 1}) as response:
                assert response.status == 200
        async with session.get(f"{http_sink.base_url}/_sink/stats") as response:
            assert await response.json() == {"counts": {"webhook": 3}, "accepted": {"webhook": 3}}
        async with session.post(f"{http_sink.base_url}/_sink/reset") as response:
            assert response.status == 200
    assert http_sink.requests == []


async def test_fail_rate_and_window(http_sink: HttpSink) -> None:
    http_sink.fail(status=500, rate=0.5, count=10)
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(60):
            async with session.post(f"{http_sink.base_url}/json/sms", json={"to": "+1"}) as response:
                statuses.append(response.status)
    assert statuses.count(500) == 10  # the window caps the failures
    assert statuses.count(200) == 50


async def test_latency_delays_answers(http_sink: HttpSink) -> None:
    http_sink.latency(0.1)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        started = loop.time()
        async with session.post(f"{http_sink.base_url}/webhook/a", data=b"{}") as response:
            assert response.status == 200
    assert loop.time() - started >= 0.1


async def test_token_endpoint_wants_a_jwt_bearer_grant(http_sink: HttpSink) -> None:
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": "client_credentials", "assertion": "a.b.c"}
        async with session.post(f"{http_sink.base_url}/token", data=form) as response:
            assert response.status == 400
        async with session.post(
            f"{http_sink.base_url}/v1/projects/p/messages:send", json={"message": {"token": "t"}}
        ) as response:
            assert response.status == 401  # no token issued by the sink
    assert http_sink.issued_tokens == set()


async def test_twilio_endpoint_requires_basic_auth_for_its_account(http_sink: HttpSink) -> None:
    url = f"{http_sink.base_url}/2010-04-01/Accounts/AC1/Messages.json"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data={"To": "+1", "Body": "x"}) as response:
            assert response.status == 401
            assert (await response.json())["code"] == 20003
        other_account = {"Authorization": "Basic " + base64.b64encode(b"AC2:token").decode()}
        async with session.post(url, data={"To": "+1", "Body": "x"}, headers=other_account) as response:
            assert response.status == 401
