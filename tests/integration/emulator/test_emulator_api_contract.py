"""The emulator's HTTP contract: routing, auth, error shapes, limits (raw HTTP, no client)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from optibridge.emulator.testing import RunningEmulator

RATE_LIMIT_BODY = {
    "status": 429,
    "error": "Too Many Requests",
    "message": "You have exceeded the rate limit for this API group. Please retry later.",
}
API_KEY = "key-1"  # the conftest tenant's key
KEY = {"X-API-KEY": API_KEY}
Clocked = Any  # conftest.Clocked: .emu (RunningEmulator) and .clock (ManualClock)


async def call(
    http: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    raw: bytes | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
    hdrs = dict(KEY if headers is None else headers)
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    async with http.request(method, base + path, headers=hdrs, data=data, params=params) as r:
        return r.status, await r.read(), r.headers


@pytest.mark.parametrize(
    "path",
    ["/current/actions/GetExecutionChannels", "/Current/Actions/getexecutionchannels",
     "/actions/GetExecutionChannels", "/ACTIONS/GETEXECUTIONCHANNELS/"],
)  # fmt: skip
async def test_paths_route_case_insensitively_with_or_without_current(
    emulator: RunningEmulator, http: aiohttp.ClientSession, path: str
) -> None:
    status, body, headers = await call(http, emulator.base_url, "GET", path)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert {"ChannelID": 504, "ChannelName": "Email"} in json.loads(body)


async def test_query_keys_bind_case_insensitively(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=5, customer_count=3)
    path = "/current/customers/GetCustomerSendDetailsByChannel"
    status, body, _ = await call(
        http, emulator.base_url, "GET", path, params={"campaignId": "5", "channelid": "504"}
    )
    assert status == 200
    assert len(json.loads(body)) == 3


async def test_unknown_function_is_404_and_wrong_method_is_405(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    status, _, _ = await call(http, emulator.base_url, "GET", "/current/general/NoSuchThing")
    assert status == 404
    status, body, _ = await call(http, emulator.base_url, "GET", "/current/integrations/AddChannelTemplates")
    assert (status, json.loads(body)) == (405, "Method Not Allowed")
    status, _, _ = await call(
        http, emulator.base_url, "POST", "/current/actions/GetExecutionChannels", body={}
    )
    assert status == 405


@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "wrong"}, {"Authorization-Token": "nope"}])
async def test_missing_or_unknown_credentials_are_401(
    emulator: RunningEmulator, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    status, body, _ = await call(
        http, emulator.base_url, "GET", "/current/actions/GetExecutionChannels", headers=headers
    )
    assert (status, json.loads(body)) == (401, "Unauthorized")


async def test_api_key_header_name_is_case_insensitive(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    status, _, _ = await call(
        http, emulator.base_url, "GET", "/current/actions/GetExecutionChannels",
        headers={"x-api-key": API_KEY},
    )  # fmt: skip
    assert status == 200


async def test_login_returns_a_quoted_token_that_authenticates_later_calls(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await call(
        http, emulator.base_url, "POST", "/current/general/login", headers={},
        body={"UserName": "user-1", "Password": "pw-1"},  # key casing is not significant
    )  # fmt: skip
    assert status == 200
    assert body.startswith(b'"')
    assert body.endswith(b'"')
    token = json.loads(body)
    status, _, _ = await call(
        http, emulator.base_url, "GET", "/current/actions/GetExecutionChannels",
        headers={"Authorization-Token": token},
    )  # fmt: skip
    assert status == 200


async def test_bad_login_is_401(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    status, body, _ = await call(
        http, emulator.base_url, "POST", "/current/general/login", headers={},
        body={"Username": "user-1", "Password": "wrong"},
    )  # fmt: skip
    assert (status, json.loads(body)) == (401, "Unauthorized")


async def login(emu: RunningEmulator, http: aiohttp.ClientSession) -> str:
    status, body, _ = await call(
        http, emu.base_url, "POST", "/current/general/login", headers={},
        body={"Username": "user-1", "Password": "pw-1"},
    )  # fmt: skip
    assert status == 200
    token: str = json.loads(body)
    return token


async def test_token_expires_after_idle_ttl_with_plain_text_403_and_use_slides_it(
    clocked: Clocked, http: aiohttp.ClientSession
) -> None:
    emu, clock = clocked.emu, clocked.clock
    await emu.control.patch_settings(rate_limit_enabled=False)
    token = await login(emu, http)
    path, auth = "/current/general/GetLastDataUpdate", {"Authorization-Token": token}
    clock.advance(50)
    assert (await call(http, emu.base_url, "GET", path, headers=auth))[0] == 200
    clock.advance(50)  # 100 s after login, but only 50 s idle
    assert (await call(http, emu.base_url, "GET", path, headers=auth))[0] == 200
    clock.advance(61)
    status, body, headers = await call(http, emu.base_url, "GET", path, headers=auth)
    assert (status, body) == (403, b"Authorization-Token Expired")
    assert headers["Content-Type"].startswith("text/plain")


async def test_forced_expiry_through_the_control_api(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    token = await login(emulator, http)
    assert await emulator.control.expire_tokens("t1") == 1
    status, body, _ = await call(
        http, emulator.base_url, "GET", "/current/general/GetLastDataUpdate",
        headers={"Authorization-Token": token},
    )  # fmt: skip
    assert (status, body) == (403, b"Authorization-Token Expired")


async def test_rate_limit_answers_429_with_optimoves_body_and_retry_after(
    clocked: Clocked, http: aiohttp.ClientSession
) -> None:
    emu, clock = clocked.emu, clocked.clock
    path = "/current/general/GetLastDataUpdate"
    for _ in range(3):
        assert (await call(http, emu.base_url, "GET", path))[0] == 200
    clock.advance(4)
    status, body, headers = await call(http, emu.base_url, "GET", path)
    assert status == 429
    assert json.loads(body) == RATE_LIMIT_BODY
    assert headers["Retry-After"] == "6"
    clock.advance(6)
    assert (await call(http, emu.base_url, "GET", path))[0] == 200


async def test_rate_limit_is_per_key(clocked: Clocked, http: aiohttp.ClientSession) -> None:
    emu = clocked.emu
    await emu.control.create_tenant("t2", api_key="key-2")
    path = "/current/general/GetLastDataUpdate"
    for _ in range(3):
        await call(http, emu.base_url, "GET", path)
    assert (await call(http, emu.base_url, "GET", path))[0] == 429
    assert (await call(http, emu.base_url, "GET", path, headers={"X-API-KEY": "key-2"}))[0] == 200


async def test_login_is_limited_to_one_per_second(clocked: Clocked, http: aiohttp.ClientSession) -> None:
    emu, clock = clocked.emu, clocked.clock
    await login(emu, http)
    status, body, _ = await call(
        http, emu.base_url, "POST", "/current/general/login", headers={},
        body={"Username": "user-1", "Password": "pw-1"},
    )  # fmt: skip
    assert (status, json.loads(body)) == (429, RATE_LIMIT_BODY)
    clock.advance(1.0)
    await login(emu, http)


async def test_limits_can_be_switched_off(clocked: Clocked, http: aiohttp.ClientSession) -> None:
    emu = clocked.emu
    await emu.control.patch_settings(rate_limit_enabled=False)
    for _ in range(10):
        assert (await call(http, emu.base_url, "GET", "/current/general/GetLastDataUpdate"))[0] == 200


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [("text/plain", b"[]"), ("application/json", b"{not json"), ("application/json", b"")],
)
async def test_post_needs_a_json_content_type_and_a_json_body(
    emulator: RunningEmulator, http: aiohttp.ClientSession, content_type: str, raw: bytes
) -> None:
    status, body, _ = await call(
        http, emulator.base_url, "POST", "/current/integrations/UpdateCampaignMetrics",
        headers={**KEY, "Content-Type": content_type}, raw=raw,
    )  # fmt: skip
    assert status == 400
    assert json.loads(body)["status"] == 400


LIMITS = [
    ("/current/integrations/AddChannelTemplates?ChannelID=504",
     [{"TemplateID": i, "TemplateName": f"t{i}"} for i in range(101)]),
    ("/current/integrations/DeleteChannelTemplates",
     [{"ChannelID": 504, "TemplateID": i} for i in range(101)]),
    ("/current/integrations/AddChannelApps?ChannelID=506",
     [{"AppID": f"a{i}", "AppName": "x"} for i in range(101)]),
    ("/current/integrations/DeleteChannelApps", [{"ChannelID": 506, "AppID": "a"}] * 101),
    ("/current/integrations/UpdateCampaignMetrics",
     [{"CampaignID": 1, "ChannelID": 504, "TemplateID": 1, "MetricID": 0, "MetricValue": 1}]
     * 101),
    ("/current/integrations/UpdateCampaignInteractions",
     {"CampaignID": 1, "ChannelID": 504, "TemplateID": 1, "EventID": 2,
      "InteractionDate": "2024-05-01", "CustomerIDs": [str(i) for i in range(10_001)]}),
    ("/current/integrations/SetCustomerChannelPreference",
     {"ChannelID": 504, "CommunicationMode": 2, "CustomerIDs": [str(i) for i in range(50_001)]}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), LIMITS, ids=[p.split("/")[3][:30] for p, _ in LIMITS])
async def test_batches_over_the_limit_are_400_and_change_nothing(
    emulator: RunningEmulator, http: aiohttp.ClientSession, path: str, body: Any
) -> None:
    status, answer, _ = await call(http, emulator.base_url, "POST", path, body=body)
    assert status == 400
    assert "at most" in json.loads(answer)["message"]
    tenant = emulator.state.tenants["t1"]
    assert not tenant.templates.get(504)
    assert not tenant.metrics
    assert not tenant.interactions


async def test_batches_at_the_limit_are_accepted_with_an_empty_200(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    path, body = LIMITS[0]
    status, answer, headers = await call(http, emulator.base_url, "POST", path, body=body[:100])
    assert (status, answer, headers["Content-Length"]) == (200, b"", "0")
