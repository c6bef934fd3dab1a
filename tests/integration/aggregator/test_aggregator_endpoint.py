"""The aggregator batch endpoint refuses what it must before storing anything (token 404, key and
signature 401, size 413, not JSON or not a batch 400), accepts a signed batch once (a repeat by
batch id or request id stores nothing), and the admin API configures a channel without ever
echoing a secret. No worker: what is stored is exactly what the endpoint wrote."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.intake.aggregator_intake import campaign_send_url
from optibridge.optimove.aggregator import signature
from optibridge.store import aggregator as agg_store
from optibridge.store import listener_tokens, tenants
from optibridge.web import auth

from inprocess import Service, running_service

TENANT, SMS, EMAIL = "acme", 505, 504
SECRET = "shared-secret-of-the-test"


async def setup(svc: Service) -> tuple[str, str]:
    """The tenant with an SMS channel in aggregator mode: (campaignSendUrl, aggregator key)."""
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
                },
                {
                    "name": "email", "kind": "email", "channel_id": EMAIL,
                    "provider": {"type": "smtp", "host": "127.0.0.1", "port": 9, "tls": "none",
                                 "from_address": "a@acme.test"},
                },
            ],
        }
    )  # fmt: skip
    rt = svc.runtime
    async with rt.pool.connection() as conn:
        await tenants.add(conn, rt.box, config, "cli")
        channel, _ = await agg_store.configure(
            conn, rt.box, TENANT, SMS, base_url="http://127.0.0.1:9", app_api_key="app", shared_secret=SECRET
        )
        token = await listener_tokens.current(conn, rt.box, TENANT)
    return campaign_send_url(svc.base_url, TENANT, token, SMS), channel.aggregator_key


def body(batch_id: str = "b1", request_id: str = "r1", n: int = 3) -> bytes:
    return json.dumps(
        {
            "batchId": batch_id,
            "requestId": request_id,
            "senderId": "ACME",
            "metadata": {"campaignId": 7, "channelId": SMS, "scheduledTime": 1_764_417_600_000},
            "recipients": [
                {"customerId": f"c{i}", "mobileNumber": f"+1555000000{i}", "message": f"Hi {i}"}
                for i in range(n)
            ],
        }
    ).encode()


async def post(
    session: aiohttp.ClientSession, url: str, data: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with session.post(url, data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def declared_too_large(url: str, headers: dict[str, str]) -> int:
    """The status for a request declaring a body over 4 MiB, sending none of it (the server answers
    from the headers and closes; a client still sending would see a reset instead)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}"
        f"Content-Length: {4 * 1024 * 1024 + 1}\r\n\r\n".encode()
    )
    await writer.drain()
    try:
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


async def stored(svc: Service) -> tuple[int, int]:
    async with svc.runtime.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT (SELECT count(*) FROM messages) AS m, (SELECT count(*) FROM aggregator_batches) AS b"
            )
        ).fetchone()
    assert row is not None
    return int(row["m"]), int(row["b"])


async def test_refusals_store_nothing_and_a_signed_batch_is_stored_once(
    db_url: str, test_secret_key: str
) -> None:
    async with running_service(db_url, test_secret_key, worker=False) as svc, aiohttp.ClientSession() as s:
        url, key = await setup(svc)
        good = body()

        def signed(data: bytes, *, k: str = key, secret: str = SECRET) -> dict[str, str]:
            return {
                "X-API-Key": k,
                "x-hub-signature": signature(secret, data),
                "content-type": "application/json",
            }

        assert (await post(s, url, good, {}))[0] == 401  # no key, no signature
        assert (await post(s, url, good, {"X-API-Key": key}))[0] == 401  # no signature
        assert (await post(s, url.replace("/acme/", "/globex/"), good, signed(good)))[0] == 404
        token_url = url.split("/channels/")[0].rsplit("/", 1)[0] + "/wrong-token/channels/505/campaigns"
        assert (await post(s, token_url, good, signed(good)))[0] == 404
        assert (await post(s, url, good, signed(good, k=key + "x")))[0] == 401
        assert (await post(s, url, good, signed(good, secret="other")))[0] == 401
        assert (await post(s, url.replace("/505/", "/504/"), good, signed(good)))[0] == 401  # not aggregator
        assert (await post(s, url.replace("/505/", "/5x5/"), good, signed(good)))[0] == 404
        tampered = good.replace(b"Hi 1", b"Hi 9")
        assert (await post(s, url, tampered, signed(good)))[0] == 401  # signed other bytes
        assert await declared_too_large(url, signed(good)) == 413  # before a byte of it is read
        status, answer = await post(s, url, b"{not json", signed(b"{not json"))
        assert status == 400
        assert "JSON" in answer["error"]
        not_batch = json.dumps({"batchId": "b9", "metadata": {}, "recipients": []}).encode()
        status, answer = await post(s, url, not_batch, signed(not_batch))
        assert status == 400
        assert "campaignId" in answer["error"]
        assert await stored(svc) == (0, 0)

        status, answer = await post(s, url, good, signed(good))
        assert status == 200, answer
        assert (answer["status"], answer["accepted"]) == ("accepted", 3)
        assert await stored(svc) == (3, 1)
        status, answer = await post(s, url, good, signed(good))  # Optimove retrying
        assert status == 200
        assert answer["status"] == "duplicate"
        same_request = body(batch_id="b2", request_id="r1")
        status, answer = await post(s, url, same_request, signed(same_request))
        assert status == 200
        assert answer["status"] == "duplicate"
        assert await stored(svc) == (3, 1)

        async with svc.runtime.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT m.address, m.attrs, m.state::text AS state, m.send_at, t.body "
                    "FROM messages m JOIN templates t ON t.tenant_id = m.tenant_id "
                    "AND t.template_id = m.template_id AND t.channel_name = 'sms' ORDER BY m.address"
                )
            ).fetchall()
        assert [r["address"] for r in rows] == ["+15550000000", "+15550000001", "+15550000002"]
        assert rows[1]["attrs"] == {"message": "Hi 1", "sender_id": "ACME"}
        assert rows[1]["state"] == "pending"
        assert rows[0]["body"] == "{{ message }}"
        assert rows[0]["send_at"] == datetime(2025, 11, 29, 12, 0, tzinfo=UTC)


async def test_admin_api_configures_without_echoing_secrets(db_url: str, test_secret_key: str) -> None:
    async with running_service(db_url, test_secret_key, worker=False) as svc, aiohttp.ClientSession() as s:
        await setup(svc)
        async with svc.runtime.pool.connection() as conn:
            _, admin_key = await auth.create_key(conn, "ops", None)
        headers = {"Authorization": f"Bearer {admin_key}"}
        path = f"{svc.base_url}/api/v1/tenants/{TENANT}/channels/{SMS}/aggregator"
        put = {
            "base_url": "http://127.0.0.1:9/sms/abc",
            "app_api_key": "app-2",
            "shared_secret": "new-secret",
        }
        async with s.put(path, json=put, headers=headers) as resp:
            text = await resp.text()
            assert resp.status == 200, text
        assert "app-2" not in text
        assert "new-secret" not in text
        out = json.loads(text)
        assert out["base_url"] == "http://127.0.0.1:9/sms/abc"
        assert out["handshake_queued"] is True
        async with s.put(path, json=put, headers=headers) as resp:
            assert (await resp.json())["handshake_queued"] is False  # nothing changed: no handshake
        async with svc.runtime.pool.connection() as conn:
            raw = await (await conn.execute("SELECT secrets FROM aggregator_channels")).fetchone()
            jobs = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM procrastinate_jobs "
                    "WHERE task_name = 'optibridge.intake.aggregator_handshake'"
                )
            ).fetchone()
        assert raw is not None
        assert b"new-secret" not in bytes(raw["secrets"])
        assert jobs is not None
        assert jobs["n"] == 1
        bad = dict(put, base_url="ftp://x.test/")
        async with s.put(path, json=bad, headers=headers) as resp:
            assert resp.status == 422
        inside = dict(put, base_url="http://169.254.169.254/")
        async with s.put(path, json=inside, headers=headers) as resp:
            assert resp.status == 422
            assert "outbound" in await resp.text()
        email = path.replace(f"/{SMS}/", f"/{EMAIL}/")
        async with s.put(email, json=put, headers=headers) as resp:
            assert resp.status == 404  # not an SMS channel
        async with s.get(path) as resp:
            assert resp.status == 401
        async with s.get(path, headers=headers) as resp:
            got = await resp.json()
            assert resp.status == 200
            assert "app-2" not in json.dumps(got)
        async with s.delete(path, headers=headers) as resp:
            assert resp.status == 200
        async with s.get(path, headers=headers) as resp:
            assert resp.status == 404


async def test_emulator_refuses_unsigned_handshakes_and_reports() -> None:
    async with running_emulator(EmulatorConfig()) as emu, aiohttp.ClientSession() as s:
        async with s.post(f"{emu.base_url}/emulator/aggregator/accounts", json={}) as resp:
            account = await resp.json()
        base = account["base_url"]
        hand = json.dumps({"campaignSendUrl": "http://127.0.0.1:9/x", "aggregatorKey": "k"}).encode()
        good = {
            "app-api-key": account["app_api_key"],
            "x-hub-signature": signature(account["shared_secret"], hand),
        }
        for headers in (
            {},
            {**good, "app-api-key": "wrong"},
            {**good, "x-hub-signature": signature("wrong", hand)},
        ):
            async with s.post(f"{base}/api/v1/aggregator/handshake", data=hand, headers=headers) as resp:
                assert resp.status == 401
        report = json.dumps({"type": {"status": "Delivered"}, "batchId": "b", "customerId": "c"}).encode()
        signed = {"app-api-key": account["app_api_key"], "x-hub-signature": signature("wrong", report)}
        async with s.post(f"{base}/api/v1/aggregator/delivery-report", data=report, headers=signed) as resp:
            assert resp.status == 401
        async with s.post(f"{base}/api/v1/aggregator/handshake", data=hand, headers=good) as resp:
            assert resp.status == 200
        async with s.get(f"{emu.base_url}/emulator/aggregator/accounts/{account['account_id']}") as resp:
            seen = await resp.json()
        assert seen["campaign_send_url"] == "http://127.0.0.1:9/x"
        assert seen["refused"] == 4
        assert seen["handshakes"] == 1
        assert seen["reports"] == 0
