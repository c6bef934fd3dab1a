"""Flows 1-4 against the emulator: listeners, template sync, notifications, paged ingest, cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.catalog.sync import sync_channel
from optibridge.catalog.tasks import run_sync
from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.intake import registration
from optibridge.optimove import ChannelTemplate
from optibridge.store import tenants

from inprocess import Service, running_service

TENANT = "acme"
KEY = "key-acme-1"
EMAIL = 504


async def setup_tenant(svc: Service, emu: RunningEmulator, **options: Any) -> None:
    await emu.control.create_tenant(TENANT, api_key=KEY, channels={EMAIL: "Email"})
    config = TenantConfig.model_validate(
        {
            "id": TENANT,
            "api_base_url": emu.base_url,
            "api_key": KEY,
            "channels": [{"name": "email", "kind": "email", "channel_id": EMAIL, "options": options}],
        }
    )
    async with svc.runtime.pool.connection() as conn:
        await tenants.add(conn, svc.runtime.box, config, "cli")


def spec(template_id: int, name: str) -> TemplateSpec:
    return TemplateSpec(
        template_id=template_id,
        name=name,
        subject=f"Offer {template_id} for {{{{ FirstName }}}}",
        body=f"<p>Hi [%FirstName%], offer {template_id}. {{{{ Country | default: 'all' }}}}</p>",
    )


async def remote_templates(emu: RunningEmulator) -> dict[int, str]:
    return {t["template_id"]: t["template_name"] for t in await emu.control.templates(TENANT)}


async def test_listeners_are_registered_once_and_only_what_differs_changes(
    db_url: str, test_secret_key: str
) -> None:
    async with running_emulator(EmulatorConfig()) as emu, running_service(db_url, test_secret_key) as svc:
        await setup_tenant(svc, emu)
        first = await registration.sync_tenant(svc.runtime, TENANT)
        assert len(first.register) == 6
        listeners = await emu.control.listeners(TENANT)
        assert sorted((r["event_type_id"], r["channel_id"]) for r in listeners) == [
            (1, EMAIL), (2, None), (3, None), (4, EMAIL), (5, None), (13, EMAIL)
        ]  # fmt: skip
        assert all(r["listener_url"].startswith(svc.base_url + f"/optimove/{TENANT}/") for r in listeners)
        second = await registration.sync_tenant(svc.runtime, TENANT)
        assert (second.register, second.unregister, len(second.unchanged)) == ([], [], 6)


async def test_template_changes_reach_optimove_and_drift_is_repaired(
    db_url: str, test_secret_key: str
) -> None:
    async with running_emulator(EmulatorConfig()) as emu, running_service(db_url, test_secret_key) as svc:
        await setup_tenant(svc, emu)
        rt = svc.runtime
        async with rt.pool.connection() as conn:
            for tid in (101, 102, 103):
                assert (
                    await catalog.upsert(conn, rt.job_app, TENANT, "email", spec(tid, f"T{tid}"), create=True)
                    == "added"
                )
            assert (await catalog.get(conn, TENANT, "email", 101)).attributes == ["FirstName", "Country"]
        await svc.wait_idle()
        assert await remote_templates(emu) == {101: "T101", 102: "T102", 103: "T103"}

        async with rt.pool.connection() as conn:
            await catalog.rename(conn, rt.job_app, TENANT, "email", 102, "Summer sale")
            await catalog.delete(conn, rt.job_app, TENANT, "email", 103)
        await svc.wait_idle()
        assert await remote_templates(emu) == {101: "T101", 102: "Summer sale"}

        # Drift: someone deletes ours and renames another on Optimove, and adds one of their own.
        client = await rt.clients.get(TENANT)
        await client.delete_channel_templates(EMAIL, [101])
        await client.add_channel_templates(
            EMAIL, [ChannelTemplate(102, "edited by hand"), ChannelTemplate(999, "theirs")]
        )
        report = await run_sync(rt, TENANT, "email")
        assert (report.added, report.deleted, report.foreign) == ([101, 102], [], [999])
        assert await remote_templates(emu) == {101: "T101", 102: "Summer sale", 999: "theirs"}
        assert (await run_sync(rt, TENANT, "email")).added == []  # nothing left to do
        assert (await run_sync(rt, TENANT, "email", delete_foreign=True)).deleted == [999]


async def test_a_broken_template_is_refused_with_line_and_reason(db_url: str, test_secret_key: str) -> None:
    from optibridge.core.errors import ConfigError

    async with running_emulator(EmulatorConfig()) as emu, running_service(db_url, test_secret_key) as svc:
        await setup_tenant(svc, emu)
        bad = TemplateSpec(template_id=7, name="bad", subject="ok", body="line 1\n{% if x %}\nno end")
        async with svc.runtime.pool.connection() as conn:
            with pytest.raises(
                ConfigError, match=r"template 7 does not parse: html, line 3: expected tag endif"
            ):
                await catalog.upsert(conn, svc.runtime.job_app, TENANT, "email", bad, create=True)
            assert await catalog.list_templates(conn, TENANT) == []


async def test_campaign_notified_twice_and_concurrently_is_ingested_once_exactly(
    db_url: str, test_secret_key: str
) -> None:
    async with (
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key, optimove_page_size=3000) as svc,
    ):
        await setup_tenant(svc, emu)
        rt = svc.runtime
        await registration.sync_tenant(rt, TENANT)
        async with rt.pool.connection() as conn:
            for tid in (101, 102, 103):
                await catalog.upsert(conn, rt.job_app, TENANT, "email", spec(tid, f"T{tid}"), create=True)
        times = ["2026-12-01 10:00:00", "2026-12-01 18:30:00"]
        created = await emu.control.create_campaign(
            TENANT,
            channel_ids=[EMAIL],
            customer_count=25_000,
            templates=[{"template_id": t, "weight": w} for t, w in ((101, 5), (102, 3), (103, 2))],
            scheduled_times=[{"scheduled_time": t, "weight": 1} for t in times],
            attribute_values={"FirstName": ["Ann", "Bo", "Chloé"], "Country": ["FR", "DE"]},
        )
        cid = created["campaign_id"]
        results = await asyncio.gather(
            emu.control.notify(TENANT, event_type_ids=[1, 13], campaign_id=cid, duplicates=2),
            emu.control.notify(TENANT, event_type_ids=[13, 1], campaign_id=cid, duplicates=2, casing="camel"),
        )
        statuses = [d["status"] for r in results for d in r["deliveries"]]
        assert statuses == [200] * 8
        await svc.wait_idle()
        assert await svc.failed_jobs() == []

        generated = emu.state.tenants[TENANT].campaigns[cid].data
        async with rt.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT customer_id, template_id, scheduled_at, send_at, address, attrs, state "
                    "FROM messages WHERE campaign_id = %s",
                    (cid,),
                )
            ).fetchall()
            campaign = await (
                await conn.execute("SELECT * FROM campaigns WHERE campaign_id = %s", (cid,))
            ).fetchone()
            notes = await (
                await conn.execute("SELECT outcome FROM notifications WHERE campaign_id = %s", (cid,))
            ).fetchall()
        assert len(rows) == 25_000
        assert len({r["customer_id"] for r in rows}) == 25_000
        for r in rows:
            index = int(r["customer_id"][1:]) - 1
            expected = generated.row(index, ["Email", "FirstName", "Country"])
            assert r["template_id"] == expected["TemplateID"]
            want_time = datetime.strptime(expected["ScheduledTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            assert r["scheduled_at"] == want_time == r["send_at"]
            assert r["address"] == expected["CustomerAttributes"][0]
            assert r["attrs"] == dict(
                zip(["Email", "FirstName", "Country"], expected["CustomerAttributes"], strict=True)
            )
            assert r["state"] == "pending"
        assert {r["template_id"] for r in rows} == {101, 102, 103}
        assert {r["scheduled_at"].strftime("%Y-%m-%d %H:%M:%S") for r in rows} == set(times)
        assert campaign is not None
        assert (campaign["status"], campaign["messages"], campaign["customers"]) == (
            "ingested",
            25_000,
            25_000,
        )
        assert campaign["ingest_pages"] == 9  # 8 full pages of 3,000 and one of 1,000
        assert len(notes) == 8
        assert sum("ingest queued" in n["outcome"] for n in notes) == 1


async def test_campaign_canceled_halfway_through_ingest_has_no_pending_rows(
    db_url: str, test_secret_key: str
) -> None:
    async with (
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key, optimove_page_size=1000) as svc,
    ):
        await setup_tenant(svc, emu)
        rt = svc.runtime
        await registration.sync_tenant(rt, TENANT)
        async with rt.pool.connection() as conn:
            await catalog.upsert(conn, rt.job_app, TENANT, "email", spec(101, "T101"), create=True)
        cid = (await emu.control.create_campaign(TENANT, channel_ids=[EMAIL], customer_count=20_000))[
            "campaign_id"
        ]
        await emu.control.add_fault(function="GetCustomerSendDetailsByChannel", latency_ms=120)
        await emu.control.notify(TENANT, event_type_ids=[1], campaign_id=cid)

        async def progress() -> int:
            async with rt.pool.connection() as conn:
                row = await (
                    await conn.execute("SELECT ingest_skip FROM campaigns WHERE campaign_id = %s", (cid,))
                ).fetchone()
            return int(row["ingest_skip"]) if row else 0

        for _ in range(300):
            if await progress() >= 10_000:
                break
            await asyncio.sleep(0.05)
        assert 10_000 <= await progress() < 20_000, "the cancel must land mid-ingest"
        cancel = await emu.control.cancel(TENANT, cid, fraction=1.0)
        assert [d["status"] for d in cancel["deliveries"]] == [200]
        await svc.wait_idle(timeout=90)
        async with rt.pool.connection() as conn:
            states = await (
                await conn.execute(
                    "SELECT state, count(*) AS n FROM messages WHERE campaign_id = %s GROUP BY state", (cid,)
                )
            ).fetchall()
        assert {r["state"]: r["n"] for r in states} == {"canceled": 20_000}


async def test_partial_cancel_spares_the_other_customers(db_url: str, test_secret_key: str) -> None:
    async with running_emulator(EmulatorConfig()) as emu, running_service(db_url, test_secret_key) as svc:
        await setup_tenant(svc, emu)
        rt = svc.runtime
        await registration.sync_tenant(rt, TENANT)
        cid = (await emu.control.create_campaign(TENANT, channel_ids=[EMAIL], customer_count=2_000))[
            "campaign_id"
        ]
        await emu.control.notify(TENANT, event_type_ids=[1], campaign_id=cid)
        await svc.wait_idle()
        result = await emu.control.cancel(TENANT, cid, fraction=0.25)
        await svc.wait_idle()
        async with rt.pool.connection() as conn:
            states = await (
                await conn.execute(
                    "SELECT state, count(*) AS n FROM messages WHERE campaign_id = %s GROUP BY state", (cid,)
                )
            ).fetchall()
        assert result["canceled_customers"] == 500
        assert {r["state"]: r["n"] for r in states} == {"canceled": 500, "pending": 1_500}


async def test_cancel_without_a_customer_list_cancels_everything_and_blocks_late_ingest(
    db_url: str, test_secret_key: str
) -> None:
    """GetCanceledCampaignCustomers refused (403: not a third-party call): the whole campaign stops,
    and a 'processed' notification arriving after the cancel ingests nothing."""
    async with running_emulator(EmulatorConfig()) as emu, running_service(db_url, test_secret_key) as svc:
        await setup_tenant(svc, emu)
        rt = svc.runtime
        await registration.sync_tenant(rt, TENANT)
        cid = (await emu.control.create_campaign(TENANT, channel_ids=[EMAIL], customer_count=300))[
            "campaign_id"
        ]
        await emu.control.add_fault(function="GetCanceledCampaignCustomers", status_codes=[403])
        await emu.control.notify(TENANT, event_type_ids=[4], campaign_id=cid)  # out of order: cancel first
        await svc.wait_idle()
        await emu.control.notify(TENANT, event_type_ids=[1], campaign_id=cid)
        await svc.wait_idle()
        async with rt.pool.connection() as conn:
            campaign = await (
                await conn.execute(
                    "SELECT status, cancel_pending FROM campaigns WHERE campaign_id = %s", (cid,)
                )
            ).fetchone()
            count = await (
                await conn.execute("SELECT count(*) AS n FROM messages WHERE campaign_id = %s", (cid,))
            ).fetchone()
        assert campaign == {"status": "canceled", "cancel_pending": False}
        assert count == {"n": 0}


class _HeldOptimove:
    """The tenant's real Optimove client, whose template calls wait for `go`: a slow Optimove."""

    def __init__(self, inner: Any, go: asyncio.Event) -> None:
        self._inner = inner
        self._go = go
        self.waited = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get_channel_templates(self, channel_id: int) -> Any:
        self.waited += 1
        await self._go.wait()
        return await self._inner.get_channel_templates(channel_id)


async def test_a_slow_optimove_holds_no_database_connection_during_a_sync(
    db_url: str, test_secret_key: str
) -> None:
    """A sync talks to Optimove for as long as its retries and rate limits take; a pooled connection
    held meanwhile is one the send jobs of every other tenant cannot have. With a pool of one
    connection, the connection is free while the sync waits on Optimove, and the sync then writes."""
    async with running_emulator(EmulatorConfig()) as emu, running_service(db_url, test_secret_key) as svc:
        await setup_tenant(svc, emu)
        rt = svc.runtime
        async with rt.pool.connection() as conn:
            await catalog.upsert(conn, rt.job_app, TENANT, "email", spec(201, "T201"), create=True)
        await svc.wait_idle()
        # Drift on Optimove's side (queues no job of ours): the sync must add 201 back.
        real = await rt.clients.get(TENANT)
        await real.delete_channel_templates(EMAIL, [201])
        assert 201 not in await remote_templates(emu)
        go = asyncio.Event()
        held = _HeldOptimove(real, go)
        async with AsyncConnectionPool(
            db_url, min_size=1, max_size=1, kwargs={"row_factory": dict_row}, open=False
        ) as one:
            sync = asyncio.create_task(sync_channel(one.connection, held, TENANT, "email"))  # type: ignore[arg-type]
            for _ in range(200):  # bounded: until the sync is waiting on Optimove
                if held.waited:
                    break
                await asyncio.sleep(0.01)
            assert held.waited == 1
            async with one.connection(timeout=2.0) as conn:  # the pool's only connection is free
                assert await (await conn.execute("SELECT 1 AS ok")).fetchone() == {"ok": 1}
            go.set()
            report = await asyncio.wait_for(sync, 30)
        assert report.added == [201]
        assert (await remote_templates(emu))[201] == "T201"
