"""Event 14 end to end through the emulator: it writes the metadata and three deflate Avro files to
a GCS emulator and POSTs the webhook (camelCase, twice); every one of 25,000 customers gets exactly
one e-mail at the SMTP sink, with the campaign's template and not before its send time; a repeated
webhook afterwards changes nothing; the metrics reach the emulator (UpdateCampaignMetrics), and the
campaign's reporting window is the metadata's Duration."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from engagementkit import EMAIL, TENANT, one, tenant_config, wait_until

from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.gcs import running_gcs
from optibridge.emulator.testing import running_emulator
from optibridge.intake import registration
from optibridge.intake.engagement_accept import ENGAGEMENT_TASK
from optibridge.reporting.tasks import run_tick
from optibridge.sinks.smtp_sink import SmtpSink
from optibridge.store import tenants

from inprocess import running_service

pytestmark = pytest.mark.slow
# The acceptance size; OPTIBRIDGE_TEST_E2E_SIZE makes a quicker local run.
CUSTOMERS = int(os.environ.get("OPTIBRIDGE_TEST_E2E_SIZE", "25000"))
ROWS_PER_FILE = -(-CUSTOMERS // 3)  # three files


async def test_an_event_14_campaign_arrives_once_per_customer_and_is_reported(
    db_url: str, test_secret_key: str
) -> None:
    with running_gcs() as gcs:
        async with (
            running_emulator(EmulatorConfig(gcs_endpoint=gcs.endpoint)) as emu,
            SmtpSink() as smtp,
            running_service(
                db_url, test_secret_key, gcs_api_endpoint=gcs.endpoint, dispatch_cron="* * * * * *"
            ) as svc,
        ):
            await emu.control.create_tenant(TENANT, api_key="k", channels={EMAIL: "Email"})
            rt = svc.runtime
            async with rt.pool.connection() as conn:
                await tenants.add(conn, rt.box, tenant_config(emu.base_url, smtp.port), "cli")
                spec = TemplateSpec(
                    template_id=3,
                    name="E3",
                    subject="Offer 3 for [%FirstName%]",
                    body="<p>Hi {{ FirstName }}, offer 3</p>",
                    text_body="Hi {{ FirstName }}, offer 3",
                )
                await catalog.upsert(conn, rt.job_app, TENANT, "email", spec, create=True)
            await registration.sync_tenant(rt, TENANT)
            send_time = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
            result = await emu.control.request(
                "POST",
                f"/tenants/{TENANT}/engagements",
                {
                    "channel_id": EMAIL,
                    "customer_count": CUSTOMERS,
                    "rows_per_file": ROWS_PER_FILE,
                    "template_id": 3,
                    "scheduled_time": send_time.strftime("%Y-%m-%d %H:%M:%S"),
                    "duration_days": 3,
                    "promotions": "spring10,vip",
                    "tags": "newsletter",
                    "attributes": ["Email", "FirstName"],
                    "attribute_values": {"FirstName": ["Ann", "Zoë"]},
                    "casing": "camel",
                    "duplicates": 2,
                },
            )
            assert len(result["files"]) == 3
            assert result["files"][0].endswith("/customers/customers_file001.deflate.avro")
            assert [c["status"] for c in result["calls"]] == [202, 202]
            assert '"ingest queued"' in result["calls"][0]["body"]
            assert '"duplicate engagement"' in result["calls"][1]["body"]
            campaign_id = result["campaign_id"]

            async def all_sent() -> bool:
                row = await one(
                    svc,
                    "SELECT count(*) FILTER (WHERE state = 'sent') AS sent, count(*) AS n FROM messages "
                    "WHERE campaign_id = %s",
                    campaign_id,
                )
                return row is not None and row["sent"] == row["n"] == CUSTOMERS

            await wait_until(all_sent, 600, "every message sent")
            await asyncio.sleep(1)  # room for a duplicate to show up

            ids = Counter(smtp.message_ids)
            assert len(ids) == CUSTOMERS
            assert set(ids.values()) == {1}
            recipients = Counter(r for m in smtp.messages for r in m.rcpt_tos)
            assert set(recipients) == {f"c{i}@example.com" for i in range(1, CUSTOMERS + 1)}
            assert set(recipients.values()) == {1}
            async with rt.pool.connection() as conn:
                rows = await (
                    await conn.execute(
                        "SELECT id, template_id, scheduled_at, send_at, sent_at, attrs FROM messages "
                        "WHERE campaign_id = %s",
                        (campaign_id,),
                    )
                ).fetchall()
            by_mid = {f"{r['id']}@acme.test": r for r in rows}
            assert set(ids) == set(by_mid)
            for mail in smtp.messages[:500]:
                row = by_mid[mail.message_id or ""]
                assert mail.parse()["Subject"] == f"Offer 3 for {row['attrs']['FirstName']}"
            assert {r["template_id"] for r in rows} == {3}
            assert {r["scheduled_at"] for r in rows} == {send_time}
            assert all(r["sent_at"] >= r["send_at"] == send_time for r in rows), "sent before its time"

            # A repeat of the webhook, long after: nothing new is queued, stored or sent.
            async with (
                aiohttp.ClientSession() as http,
                http.post(result["webhook_url"], json=result["payload"]) as r,
            ):
                assert r.status == 202
                assert (await r.json())["outcome"] == "duplicate engagement"
            jobs = await one(
                svc, "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = %s", ENGAGEMENT_TASK
            )
            assert jobs == {"n": 1}
            await asyncio.sleep(1.5)
            assert len(smtp.message_ids) == CUSTOMERS
            engagement = await one(svc, "SELECT status, promotions, tags FROM engagements")
            assert engagement == {
                "status": "ingested",
                "promotions": ["spring10", "vip"],
                "tags": ["newsletter"],
            }

            # Reporting: the classic UpdateCampaignMetrics push, its window the metadata's Duration.
            # The service's own reporting tick may push first (under load its timing shifts): the
            # push is asserted where it lands, at the emulator, whichever tick made it.
            await run_tick(rt, datetime.now(UTC))

            async def metrics_reported() -> bool:
                return any(
                    m["campaign_id"] == campaign_id and m["metric_id"] == 0
                    for m in await emu.control.metrics(TENANT)
                )

            await wait_until(metrics_reported, 60, "the campaign's metrics at the emulator")
            window = await one(
                svc,
                "SELECT final_at - finished_at AS w FROM report_schedules WHERE campaign_id = %s",
                campaign_id,
            )
            assert window == {"w": timedelta(days=3)}
            metrics = {
                (m["template_id"], m["metric_id"]): m["value"]
                for m in await emu.control.metrics(TENANT)
                if m["campaign_id"] == campaign_id
            }
            assert metrics[(3, 0)] == CUSTOMERS  # sent
