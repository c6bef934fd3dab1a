"""The handshake: refused by a base URL with the wrong secret (recorded, not retried), idempotent,
and run again when the listener token is rotated (the registered campaignSendUrl went stale), after
which the old URL still works for the grace period and the new one works at once."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp

from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.intake import aggregator_intake
from optibridge.intake.aggregator_tasks import HANDSHAKE_TASK, requeue_stale
from optibridge.store import aggregator as agg_store
from optibridge.store import listener_tokens, tenants

from inprocess import running_service

TENANT, SMS = "acme", 505


async def test_handshake_refused_then_idempotent_then_again_after_token_rotation(
    db_url: str, test_secret_key: str
) -> None:
    async with (
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key, worker=False) as svc,
        aiohttp.ClientSession() as s,
    ):
        async with s.post(f"{emu.base_url}/emulator/aggregator/accounts", json={}) as resp:
            account = await resp.json()
        acc_url = f"{emu.base_url}/emulator/aggregator/accounts/{account['account_id']}"
        config = TenantConfig.model_validate(
            {
                "id": TENANT,
                "api_base_url": "http://127.0.0.1:9",
                "api_key": "k",
                "channels": [
                    {
                        "name": "sms", "kind": "sms", "channel_id": SMS,
                        "provider": {"type": "twilio", "account_sid": "AC1", "auth_token": "t",
                                     "from_number": "+15550000000", "base_url": "http://127.0.0.1:9"},
                    }
                ],
            }
        )  # fmt: skip
        rt = svc.runtime
        async with rt.pool.connection() as conn:
            await tenants.add(conn, rt.box, config, "cli")
            await agg_store.configure(
                conn, rt.box, TENANT, SMS, base_url=account["base_url"],
                app_api_key=account["app_api_key"], shared_secret="not-the-shared-secret",
            )  # fmt: skip

        refused = await aggregator_intake.handshake(rt, TENANT, SMS)
        assert not refused.ok
        assert not refused.transient  # a 401 will not pass by itself: no retries
        assert "401" in (refused.error or "")
        async with rt.pool.connection() as conn:
            ch = await agg_store.get(conn, rt.box, TENANT, SMS)
        assert ch is not None
        assert ch.handshake_at is None
        assert "401" in (ch.handshake_error or "")
        assert await requeue_stale(rt) == []  # a failing handshake is not "stale": left to people

        async with rt.pool.connection() as conn:
            _, changed = await agg_store.configure(
                conn, rt.box, TENANT, SMS, base_url=account["base_url"],
                app_api_key=account["app_api_key"], shared_secret=account["shared_secret"],
            )  # fmt: skip
        assert changed
        for _ in range(2):
            assert (await aggregator_intake.handshake(rt, TENANT, SMS)).ok
        async with s.get(acc_url) as resp:
            seen = await resp.json()
        assert seen["handshakes"] == 2
        first_url = seen["campaign_send_url"]
        assert await requeue_stale(rt) == []

        async with rt.pool.connection() as conn:
            await listener_tokens.rotate(conn, rt.box, TENANT, datetime.now(UTC))
        assert await requeue_stale(rt) == [(TENANT, SMS)]
        async with rt.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = %s AND status = 'todo'",
                    (HANDSHAKE_TASK,),
                )
            ).fetchone()
        assert row is not None
        assert row["n"] == 1
        assert (await aggregator_intake.handshake(rt, TENANT, SMS)).ok  # what the job does
        async with s.get(acc_url) as resp:
            seen = await resp.json()
        assert seen["campaign_send_url"] != first_url
        assert seen["campaign_send_url"].startswith(f"{svc.base_url}/aggregator/{TENANT}/")
        assert await requeue_stale(rt) == []
