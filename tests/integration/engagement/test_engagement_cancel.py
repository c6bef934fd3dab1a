"""An event-14 campaign is the classic flow's campaign to Optimove's other events: event 4 for its
CampaignID cancels the listed customers' messages, the rest stay due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engagementkit import EMAIL, TENANT, one, tenant_config, wait_until

from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.gcs import running_gcs
from optibridge.emulator.testing import running_emulator
from optibridge.intake import registration
from optibridge.store import tenants

from inprocess import Service, running_service


async def states(svc: Service, campaign_id: int) -> dict[str, int]:
    async with svc.runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT state, count(*) AS n FROM messages WHERE campaign_id = %s GROUP BY state",
                (campaign_id,),
            )
        ).fetchall()
    return {str(r["state"]): int(r["n"]) for r in rows}


async def test_event_4_cancels_listed_customers_of_an_event_14_campaign(
    db_url: str, test_secret_key: str
) -> None:
    with running_gcs() as gcs:
        async with (
            running_emulator(EmulatorConfig(gcs_endpoint=gcs.endpoint)) as emu,
            running_service(db_url, test_secret_key, gcs_api_endpoint=gcs.endpoint) as svc,
        ):
            await emu.control.create_tenant(TENANT, api_key="k", channels={EMAIL: "Email"})
            rt = svc.runtime
            async with rt.pool.connection() as conn:
                await tenants.add(conn, rt.box, tenant_config(emu.base_url, 2525), "cli")
                spec = TemplateSpec(template_id=1, name="E1", subject="Hi", body="<p>Hi</p>", text_body="Hi")
                await catalog.upsert(conn, rt.job_app, TENANT, "email", spec, create=True)
            await registration.sync_tenant(rt, TENANT)
            later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
            result = await emu.control.request(
                "POST",
                f"/tenants/{TENANT}/engagements",
                {
                    "channel_id": EMAIL,
                    "customer_count": 200,
                    "rows_per_file": 80,
                    "template_id": 1,
                    "scheduled_time": later.strftime("%Y-%m-%d %H:%M:%S"),
                },
            )
            cid = result["campaign_id"]
            assert len(result["files"]) == 3

            async def ingested() -> bool:
                row = await one(svc, "SELECT status FROM campaigns WHERE campaign_id = %s", cid)
                return row == {"status": "ingested"}

            await wait_until(ingested, 60, "ingested")
            assert await states(svc, cid) == {"pending": 200}
            canceled = await emu.control.cancel(TENANT, cid, fraction=0.25)
            assert canceled["canceled_customers"] == 50

            async def split() -> bool:
                return await states(svc, cid) == {"pending": 150, "canceled": 50}

            await wait_until(split, 60, "50 canceled, 150 still due")
