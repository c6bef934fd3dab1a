"""A server that serves fewer rows per page than we ask for must never truncate an audience."""

from __future__ import annotations

from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.intake import registration
from optibridge.store import tenants

from inprocess import running_service

TENANT = "acme"
KEY = "key-acme-1"
EMAIL = 504


async def test_a_page_cap_of_500_under_a_page_size_of_10000_ingests_all_20000_customers(
    db_url: str, test_secret_key: str
) -> None:
    async with (
        running_emulator(EmulatorConfig(max_page_size=500, rate_limit_enabled=False)) as emu,
        running_service(db_url, test_secret_key, optimove_page_size=10_000) as svc,
    ):
        await emu.control.create_tenant(TENANT, api_key=KEY, channels={EMAIL: "Email"})
        config = TenantConfig.model_validate(
            {
                "id": TENANT,
                "api_base_url": emu.base_url,
                "api_key": KEY,
                "channels": [{"name": "email", "kind": "email", "channel_id": EMAIL}],
            }
        )
        async with svc.runtime.pool.connection() as conn:
            await tenants.add(conn, svc.runtime.box, config, "cli")
        await registration.sync_tenant(svc.runtime, TENANT)
        created = await emu.control.create_campaign(
            TENANT, channel_ids=[EMAIL], customer_count=20_000, attribute_values={"FirstName": ["Ann"]}
        )
        cid = created["campaign_id"]
        await emu.control.notify(TENANT, event_type_ids=[1], campaign_id=cid)
        await svc.wait_idle()
        assert await svc.failed_jobs() == []
        async with svc.runtime.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(DISTINCT customer_id) AS n FROM messages WHERE campaign_id = %s", (cid,)
                )
            ).fetchone()
            campaign = await (
                await conn.execute(
                    "SELECT status, customers, ingest_notes FROM campaigns WHERE campaign_id = %s", (cid,)
                )
            ).fetchone()
        pages = await emu.control.requests(function="GetCustomerSendDetailsByChannel")
    assert row is not None
    assert row["n"] == 20_000, campaign
    assert campaign is not None
    assert (campaign["status"], campaign["customers"]) == ("ingested", 20_000)
    # The campaign says what it saw, once.
    assert campaign["ingest_notes"] == [
        "the server serves at most 500 rows a page ($top=10000); paging went on to the empty page"
    ]
    # 40 pages of 500, and the empty page that ends the data.
    assert len(pages) == 41
