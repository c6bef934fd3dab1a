"""`optibridge aggregator` as an operator runs it: secrets from the environment (never argv, never
printed), the handshake done at once, bad input a one-line error."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import aiohttp
import pytest

from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator

from test_cli_errors import assert_one_line_error, run

pytestmark = pytest.mark.slow  # ~40 s: a dozen CLI processes


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the emulator answering the handshake runs on this test's event loop.
    return await asyncio.to_thread(run, env, *args)


async def test_set_show_handshake_remove(service_env: dict[str, str]) -> None:
    async with running_emulator(EmulatorConfig()) as emu, aiohttp.ClientSession() as s:
        async with s.post(f"{emu.base_url}/emulator/aggregator/accounts", json={}) as resp:
            account: dict[str, Any] = await resp.json()
        added = await cli(
            service_env, "tenants", "add", "acme", "--api-url", "http://127.0.0.1:9", "--api-key", "k",
            "--channel", "email:504", "--channel", "sms:505",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        env = service_env | {
            "OPTIBRIDGE_PUBLIC_URL": "https://ob.example",
            "OPTIBRIDGE_AGGREGATOR_APP_API_KEY": account["app_api_key"],
            "OPTIBRIDGE_AGGREGATOR_SHARED_SECRET": account["shared_secret"],
        }
        done = await cli(env, "aggregator", "set", "acme", "505", "--base-url", account["base_url"])
        assert done.returncode == 0, done.stderr
        assert "handshake done" in done.stderr
        shown = json.loads(done.stdout)
        assert shown["base_url"] == account["base_url"]
        assert shown["handshake_url"].startswith("https://ob.example/aggregator/acme/***/")
        for secret in (account["app_api_key"], account["shared_secret"]):
            assert secret not in done.stdout + done.stderr
        async with s.get(f"{emu.base_url}/emulator/aggregator/accounts/{account['account_id']}") as resp:
            seen = await resp.json()
        assert seen["handshakes"] == 1
        assert seen["campaign_send_url"].startswith("https://ob.example/aggregator/acme/")

        again = await cli(env, "aggregator", "set", "acme", "505", "--base-url", account["base_url"])
        assert again.returncode == 0, again.stderr
        assert "unchanged" in again.stderr  # idempotent: no second handshake needed
        assert (await cli(env, "aggregator", "handshake", "acme", "505")).returncode == 0
        async with s.get(f"{emu.base_url}/emulator/aggregator/accounts/{account['account_id']}") as resp:
            assert (await resp.json())["handshakes"] == 2

        status = json.loads((await cli(env, "aggregator", "show", "acme", "505")).stdout)
        assert status["reports_sent"] == 0
        assert status["handshake_error"] is None

        assert_one_line_error(
            await cli(env, "aggregator", "set", "acme", "505", "--base-url", "ftp://x.test"), "base-url"
        )
        assert_one_line_error(
            await cli(env, "aggregator", "set", "acme", "504", "--base-url", account["base_url"]),
            "no SMS channel",
        )
        assert (await cli(env, "aggregator", "remove", "acme", "505")).returncode == 0
        assert_one_line_error(await cli(env, "aggregator", "show", "acme", "505"), "not in aggregator mode")
