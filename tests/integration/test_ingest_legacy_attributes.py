"""Bad customer data fails that customer alone, with a counted reason: a legacy `CustomerAttribute`
value holding the delimiter (never shifting values under the wrong names), a NUL character."""

from __future__ import annotations

from typing import Any

from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.intake import registration
from optibridge.store import tenants

from inprocess import running_service

TENANT = "acme"
KEY = "key-acme-1"
EMAIL = 504


async def ingested_rows(db_url: str, test_secret_key: str, **campaign: Any) -> list[dict[str, Any]]:
    """Ingest one 60-customer campaign made with `campaign` (emulator spec); its message rows."""
    async with (
        running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu,
        running_service(db_url, test_secret_key) as svc,
    ):
        await emu.control.create_tenant(TENANT, api_key=KEY, channels={EMAIL: "Email"})
        config = TenantConfig.model_validate(
            {
                "id": TENANT,
                "api_base_url": emu.base_url,
                "api_key": KEY,
                "channels": [
                    {
                        "name": "email",
                        "kind": "email",
                        "channel_id": EMAIL,
                        "options": {"extra_attributes": ["City", "FirstName"]},
                    }
                ],
            }
        )
        async with svc.runtime.pool.connection() as conn:
            await tenants.add(conn, svc.runtime.box, config, "cli")
        await registration.sync_tenant(svc.runtime, TENANT)
        created = await emu.control.create_campaign(
            TENANT, channel_ids=[EMAIL], customer_count=60, **campaign
        )
        cid = created["campaign_id"]
        await emu.control.notify(TENANT, event_type_ids=[1], campaign_id=cid)
        await svc.wait_idle()
        assert await svc.failed_jobs() == []
        async with svc.runtime.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT customer_id, state, reason, attrs FROM messages WHERE campaign_id = %s", (cid,)
                )
            ).fetchall()
    return list(rows)


async def test_a_delimiter_inside_a_value_fails_only_that_customer(db_url: str, test_secret_key: str) -> None:
    rows = await ingested_rows(
        db_url,
        test_secret_key,
        attribute_format="string",
        attribute_values={"City": ["Paris", "Washington, D.C."], "FirstName": ["Ann", "Bo"]},
    )
    assert len(rows) == 60
    shifted = [r for r in rows if r["reason"] and "requested attributes" in r["reason"]]
    clean = [r for r in rows if r not in shifted]
    assert shifted, "the campaign should hold customers in Washington, D.C."
    assert clean, "and customers elsewhere"
    assert all(r["state"] == "failed" and r["attrs"] == {} for r in shifted)
    assert all("4 values for 3 requested attributes" in r["reason"] for r in shifted)
    # Nobody else was touched: every other customer is in Paris with a real first name.
    assert {r["attrs"]["City"] for r in clean} == {"Paris"}
    assert {r["attrs"]["FirstName"] for r in clean} <= {"Ann", "Bo"}
    assert all(r["state"] != "failed" or r["reason"] == "no address" for r in clean)


async def test_a_nul_in_one_customers_attribute_fails_only_that_customer(
    db_url: str, test_secret_key: str
) -> None:
    rows = await ingested_rows(
        db_url, test_secret_key, attribute_values={"City": ["Paris"], "FirstName": ["Ann", "Bo\u0000b"]}
    )
    assert len(rows) == 60
    nul = [r for r in rows if r["reason"] and "NUL" in r["reason"]]
    assert nul, "the campaign should hold customers named Bo\\0b"
    assert all(r["state"] == "failed" and r["attrs"] == {} for r in nul)
    others = [r for r in rows if r not in nul]
    assert others
    assert {r["attrs"]["FirstName"] for r in others} == {"Ann"}
