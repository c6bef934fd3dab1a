"""The event-14 ingest job against a real GCS emulator: metadata and Avro files become the classic
flow's message rows; bad records and count mismatches are notes; a TemplateID beyond our catalog
fails the campaign with the id kept exact."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
from engagementkit import EMAIL, TENANT, add_tenant, one, payload, put_files, wait_until

from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.gcs import running_gcs
from optibridge.emulator.testing import running_emulator
from optibridge.intake import engagement_tasks, ingest
from optibridge.sinks.smtp_sink import SmtpSink
from optibridge.web import auth

from inprocess import Service, running_service

WHEN = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def metadata(
    engagement_id: int, files: int, customers: int, template_id: int = 1, **extra: object
) -> dict[str, object]:
    return {
        "CampaignID": 1,
        "EngagementID": engagement_id,
        "Duration": 3,
        "NumberOfCustomers": customers,
        "NumberOfFiles": files,
        "Promotions": "promo1,promo2",
        "ScheduledTime": WHEN.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "TemplateID": template_id,
        "TemplateName": "E1",
        "Tags": "vip, summer",
        **extra,
    }


async def status_of(svc: Service, engagement_id: int) -> str:
    row = await one(svc, "SELECT status FROM engagements WHERE engagement_id = %s", engagement_id)
    return str(row["status"]) if row else "none"


async def test_files_become_messages_with_notes_for_bad_records(db_url: str, test_secret_key: str) -> None:
    with running_gcs() as gcs:
        async with (
            SmtpSink() as smtp,
            running_emulator(EmulatorConfig()) as emu,
            running_service(db_url, test_secret_key, gcs_api_endpoint=gcs.endpoint) as svc,
            aiohttp.ClientSession() as http,
        ):
            await emu.control.create_tenant(TENANT, api_key="k", channels={EMAIL: "Email"})
            url = await add_tenant(svc, emu.base_url, smtp.port)
            files = [
                [{"CustomerID": f"C{i}", "Email": f"c{i}@x.test", "FirstName": "Ann"} for i in range(1, 41)],
                [{"CustomerID": None, "Email": "nobody@x.test", "FirstName": "No"}]
                + [
                    {"CustomerID": f"C{i}", "Email": f"c{i}@x.test", "FirstName": "Bo"} for i in range(41, 61)
                ],
                [{"CustomerID": "C61", "Email": None, "FirstName": "Cy"}],  # no address: not sent, counted
            ]
            await asyncio.to_thread(put_files, gcs.endpoint, "e1", 9001, metadata(9001, 3, 60), files)
            async with http.post(url, json=payload(31, 9001, "e1")) as r:
                assert r.status == 202

            async def done() -> bool:
                return await status_of(svc, 9001) in ("ingested", "failed")

            await wait_until(done, 60, "engagement ingested")
            e = await one(svc, "SELECT * FROM engagements WHERE engagement_id = 9001")
            assert e is not None
            assert e["status"] == "ingested", e["error"]
            assert (e["template_id"], e["scheduled_time"], e["duration_days"]) == (Decimal(1), WHEN, 3)
            assert (e["promotions"], e["tags"]) == (["promo1", "promo2"], ["vip", "summer"])
            c = await one(svc, "SELECT * FROM campaigns WHERE campaign_id = 31")
            assert c is not None
            assert (c["status"], c["customers"], c["report_window_days"]) == ("ingested", 61, 3)
            notes = " | ".join(c["ingest_notes"])
            assert "1 customer record(s) skipped (first: file 2 record 1: no usable CustomerID)" in notes
            assert "NumberOfCustomers is 60, the files held 62" in notes
            rows = await one(
                svc,
                "SELECT count(*) AS n, count(DISTINCT id) AS ids, min(template_id) AS t, "
                "min(scheduled_at) AS s, count(*) FILTER (WHERE address IS NULL) AS unaddressed "
                "FROM messages WHERE campaign_id = 31",
            )
            assert rows == {"n": 61, "ids": 61, "t": 1, "s": WHEN, "unaddressed": 1}
            # The campaign API shows where the campaign came from.
            async with svc.runtime.pool.connection() as conn:
                _, api_key = await auth.create_key(conn, "t", None)
            async with http.get(
                f"{svc.base_url}/api/v1/tenants/{TENANT}/channels/email/campaigns/31",
                headers={"Authorization": f"Bearer {api_key}"},
            ) as r:
                assert r.status == 200, await r.text()
                shown = (await r.json())["engagement"]
            assert shown["engagement_id"] == 9001
            assert shown["template_id"] == "1"
            assert (shown["promotions"], shown["tags"], shown["duration_days"]) == (
                ["promo1", "promo2"],
                ["vip", "summer"],
                3,
            )
            m = await one(svc, "SELECT id, attrs FROM messages WHERE customer_id = 'C45'")
            assert m is not None
            assert m["id"] == ingest.message_id(TENANT, EMAIL, 31, "C45", 1)  # the classic flow's key
            assert m["attrs"]["FirstName"] == "Bo"


async def test_a_template_id_beyond_the_catalog_fails_with_the_id_kept_exact(
    db_url: str, test_secret_key: str
) -> None:
    big = 2**53 + 1
    with running_gcs() as gcs:
        async with (
            running_emulator(EmulatorConfig()) as emu,
            running_service(db_url, test_secret_key, gcs_api_endpoint=gcs.endpoint) as svc,
            aiohttp.ClientSession() as http,
        ):
            await emu.control.create_tenant(TENANT, api_key="k", channels={EMAIL: "Email"})
            url = await add_tenant(svc, emu.base_url, 2525)
            files = [[{"CustomerID": "C1", "Email": "c1@x.test", "FirstName": "A"}]]
            await asyncio.to_thread(
                put_files, gcs.endpoint, "e2", 9002, metadata(9002, 1, 1, template_id=big), files
            )
            async with http.post(url, json=payload(32, 9002, "e2")) as r:
                assert r.status == 202

            async def done() -> bool:
                return await status_of(svc, 9002) in ("ingested", "failed")

            await wait_until(done, 60, "engagement finished")
            e = await one(
                svc, "SELECT status, error, template_id, template_id::text AS exact FROM engagements"
            )
            assert e is not None
            assert e["status"] == "failed"
            assert e["exact"] == "9007199254740993"
            assert str(big) in e["error"]
            c = await one(svc, "SELECT status FROM campaigns WHERE campaign_id = 32")
            assert c == {"status": "failed"}
            n = await one(svc, "SELECT count(*) AS n FROM messages")
            assert n == {"n": 0}
            async with svc.runtime.pool.connection() as conn:
                _, api_key = await auth.create_key(conn, "t", None)
            async with http.get(
                f"{svc.base_url}/api/v1/tenants/{TENANT}/channels/email/campaigns/32",
                headers={"Authorization": f"Bearer {api_key}"},
            ) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
            assert body["engagement"]["template_id"] == "9007199254740993"  # exact, as text
            assert body["status"] == "failed"
            assert str(big) in body["error"]


async def test_missing_files_fail_the_engagement_with_the_reason(db_url: str, test_secret_key: str) -> None:
    with running_gcs() as gcs:
        async with (
            running_emulator(EmulatorConfig()) as emu,
            running_service(db_url, test_secret_key, gcs_api_endpoint=gcs.endpoint) as svc,
            aiohttp.ClientSession() as http,
        ):
            await emu.control.create_tenant(TENANT, api_key="k", channels={EMAIL: "Email"})
            url = await add_tenant(svc, emu.base_url, 2525)
            gcs.ensure_bucket("optigration-external-eu")
            async with http.post(url, json=payload(33, 9003, "nothing-there")) as r:
                assert r.status == 202

            async def done() -> bool:
                return await status_of(svc, 9003) in ("ingested", "failed")

            await wait_until(done, 60, "engagement finished")
            e = await one(svc, "SELECT status, error FROM engagements")
            assert e is not None
            assert e["status"] == "failed"
            assert "404" in e["error"] or "No such object" in e["error"], e["error"]
            assert await one(svc, "SELECT status FROM campaigns WHERE campaign_id = 33") == {
                "status": "failed"
            }

            # The files appear; Optimove's repeat of the webhook is the chance to resume (as a
            # repeated event 1/13 is in the classic flow).
            files = [[{"CustomerID": "C1", "Email": "c1@x.test", "FirstName": "A"}]]
            await asyncio.to_thread(
                put_files, gcs.endpoint, "nothing-there", 9003, metadata(9003, 1, 1), files
            )
            async with http.post(url, json=payload(33, 9003, "nothing-there")) as r:
                assert r.status == 202
                assert (await r.json())["outcome"] == "ingest restarted"
            await wait_until(done, 60, "engagement finished again")
            assert await status_of(svc, 9003) == "ingested"
            assert await one(svc, "SELECT count(*) AS n FROM messages WHERE campaign_id = 33") == {"n": 1}
            async with http.post(url, json=payload(33, 9003, "nothing-there")) as r:
                assert (await r.json())["outcome"] == "duplicate engagement"


async def test_a_resumed_ingest_skips_the_rows_an_earlier_run_wrote(
    db_url: str, test_secret_key: str
) -> None:
    with running_gcs() as gcs:
        async with (
            running_service(db_url, test_secret_key, gcs_api_endpoint=gcs.endpoint, worker=False) as svc,
            aiohttp.ClientSession() as http,
        ):
            url = await add_tenant(svc, "http://127.0.0.1:9", 2525)
            files = [
                [{"CustomerID": f"C{i}", "Email": f"c{i}@x.test", "FirstName": "A"} for i in range(1, 16)],
                [{"CustomerID": None, "Email": "x@x.test", "FirstName": "B"}]  # not a row: not counted
                + [{"CustomerID": f"C{i}", "Email": f"c{i}@x.test", "FirstName": "B"} for i in range(16, 31)],
            ]
            await asyncio.to_thread(put_files, gcs.endpoint, "e4", 9004, metadata(9004, 2, 30), files)
            async with http.post(url, json=payload(34, 9004, "e4")) as r:
                assert r.status == 202
            async with svc.runtime.pool.connection() as conn:
                # As a crashed run leaves it: 20 rows written, the attributes it asked for fixed.
                await conn.execute(
                    "UPDATE campaigns SET ingest_skip = 20, attributes = '{Email,FirstName}' "
                    "WHERE campaign_id = 34"
                )
            assert await engagement_tasks.run_engagement(svc.runtime, TENANT, EMAIL, 9004) == "ingested"
            rows = await one(
                svc,
                "SELECT count(*) AS n, min(substr(customer_id, 2)::int) AS first, "
                "count(*) FILTER (WHERE address IS NULL) AS unaddressed FROM messages WHERE campaign_id = 34",
            )
            assert rows == {"n": 10, "first": 21, "unaddressed": 0}
            c = await one(svc, "SELECT status, ingest_skip FROM campaigns WHERE campaign_id = 34")
            assert c == {"status": "ingested", "ingest_skip": 30}
