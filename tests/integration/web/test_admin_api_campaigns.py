"""Campaigns through the API: filters, pagination, progress from the message rows, and what
pause / resume / cancel do to the database."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from adminkit import Admin, seed_campaign

BASE = "/api/v1/tenants/acme/channels/email/campaigns"


async def test_detail_shows_progress_per_state_per_template_and_failures_by_reason(web: Admin) -> None:
    async with web.svc.runtime.pool.connection() as conn:
        states = {"pending": 5, "claimed": 1, "sent": 10, "failed": 3, "suppressed": 1}
        await seed_campaign(
            conn, "acme", "email", 504, 42, states, templates=(1, 2), reason="550 no such user"
        )
    reply = await web.call("GET", f"{BASE}/42", key="acme")
    assert reply.status == 200, reply.text
    c = reply.body
    assert (c["status"], c["paused"], c["ingest"]["finished"]) == ("ingested", False, True)
    p = c["progress"]
    assert p["counts"] == {
        "pending": 5,
        "claimed": 1,
        "sent": 10,
        "failed": 3,
        "suppressed": 1,
        "canceled": 0,
        "expired": 0,
    }
    assert (p["total"], p["sent"], p["done"], p["remaining"], p["percent_sent"]) == (20, 10, 14, 6, 50.0)
    assert p["rate_per_s"] > 0  # the 10 were sent "now", inside the rate window
    assert p["eta_s"] is not None
    assert {t["template_id"]: t["progress"]["total"] for t in c["templates"]} == {1: 10, 2: 10}
    assert c["failures"] == [{"reason": "550 no such user", "count": 3}]


async def test_pause_and_resume_set_the_paused_flag_and_say_what_happened(web: Admin) -> None:
    async with web.svc.runtime.pool.connection() as conn:
        await seed_campaign(conn, "acme", "email", 504, 42, {"pending": 3})
    paused = await web.call("POST", f"{BASE}/42/pause")
    assert (paused.status, paused.body["outcome"], paused.body["campaign"]["paused"]) == (200, "paused", True)
    assert (await web.call("POST", f"{BASE}/42/pause")).body["outcome"] == "already paused"
    async with web.svc.runtime.pool.connection() as conn:
        row = await (await conn.execute("SELECT paused FROM campaigns WHERE campaign_id = 42")).fetchone()
        assert row["paused"] is True
    resumed = await web.call("POST", f"{BASE}/42/resume")
    assert (resumed.body["outcome"], resumed.body["campaign"]["paused"]) == ("resumed", False)
    async with web.svc.runtime.pool.connection() as conn:
        row = await (await conn.execute("SELECT paused FROM campaigns WHERE campaign_id = 42")).fetchone()
        assert row["paused"] is False
    assert (await web.call("POST", f"{BASE}/43/pause")).status == 404
    assert (
        await web.call("POST", "/api/v1/tenants/globex/channels/email/campaigns/42/pause", key="acme")
    ).status == 403


async def test_cancel_cancels_the_campaign_and_every_pending_message_in_one_go(web: Admin) -> None:
    async with web.svc.runtime.pool.connection() as conn:
        await seed_campaign(conn, "acme", "email", 504, 42, {"pending": 4, "claimed": 1, "sent": 2})
        await seed_campaign(conn, "acme", "sms", 505, 42, {"pending": 3})  # same campaign, other channel
    reply = await web.call("POST", f"{BASE}/42/cancel")
    assert reply.status == 200
    assert reply.body["outcome"] == "canceled; 4 pending message(s) canceled"
    assert reply.body["campaign"]["status"] == "canceled"
    async with web.svc.runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT channel_id, state::text AS state, reason, count(*) AS n FROM messages "
                "GROUP BY 1, 2, 3 ORDER BY 1, 2"
            )
        ).fetchall()
        camp = await (
            await conn.execute("SELECT status, canceled_at FROM campaigns WHERE channel_id = 504")
        ).fetchone()
    assert [(r["channel_id"], r["state"], r["reason"], r["n"]) for r in rows] == [
        (504, "canceled", "canceled by operator", 4),
        (504, "claimed", None, 1),  # in the dispatcher's hands: it sees the status, not this request
        (504, "sent", None, 2),
        (505, "pending", None, 3),
    ]
    assert camp["status"] == "canceled"
    assert camp["canceled_at"] is not None
    again = await web.call("POST", f"{BASE}/42/cancel")
    assert again.body["outcome"] == "already canceled; 0 pending message(s) canceled"
    refused = await web.call("POST", f"{BASE}/42/resume")
    assert (refused.status, refused.body["error"]) == (409, "conflict")


async def test_list_filters_and_pages_newest_first_exactly_once(web: Admin) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    async with web.svc.runtime.pool.connection() as conn:
        for i in range(1, 13):
            await seed_campaign(
                conn, "acme", "email", 504, i, {"pending": 1}, created_at=base + timedelta(hours=i)
            )
        # Two campaigns at the same instant: the cursor must still tell them apart.
        await seed_campaign(conn, "acme", "sms", 505, 5, {"sent": 1}, created_at=base + timedelta(hours=5))
        await seed_campaign(conn, "globex", "email", 504, 100, {"sent": 2}, status="ingesting")
        await conn.execute("UPDATE campaigns SET paused = true WHERE campaign_id = 3")
    seen: list[tuple[str, int]] = []
    cursor = None
    for _ in range(20):
        page = (
            await web.call(
                "GET", "/api/v1/tenants/acme/campaigns?limit=5" + (f"&cursor={cursor}" if cursor else "")
            )
        ).body
        seen += [(c["channel"], c["campaign_id"]) for c in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(seen) == len(set(seen)) == 13
    assert [cid for ch, cid in seen if ch == "email"] == list(range(12, 0, -1))
    everything = (await web.call("GET", "/api/v1/campaigns?limit=500")).body["items"]
    assert len(everything) == 14
    mine = (await web.call("GET", "/api/v1/campaigns", key="globex")).body["items"]
    assert [c["campaign_id"] for c in mine] == [100]
    paused = (await web.call("GET", "/api/v1/campaigns?paused=true")).body["items"]
    assert [c["campaign_id"] for c in paused] == [3]
    ingesting = (await web.call("GET", "/api/v1/campaigns?status=ingesting")).body["items"]
    assert [c["tenant_id"] for c in ingesting] == ["globex"]
    sms = (await web.call("GET", "/api/v1/tenants/acme/campaigns?channel=sms")).body["items"]
    assert [c["campaign_id"] for c in sms] == [5]


async def test_cancel_of_a_finished_campaign_says_so_and_changes_nothing(web: Admin) -> None:
    async with web.svc.runtime.pool.connection() as conn:
        await seed_campaign(conn, "acme", "email", 504, 42, {"sent": 5, "failed": 1})
    reply = await web.call("POST", f"{BASE}/42/cancel")
    assert reply.status == 409, reply.text
    assert "is finished" in reply.body["detail"]
    async with web.svc.runtime.pool.connection() as conn:
        camp = await (
            await conn.execute("SELECT status, canceled_at FROM campaigns WHERE campaign_id = 42")
        ).fetchone()
    assert (camp["status"], camp["canceled_at"]) == ("ingested", None)


async def test_report_push_is_scoped_to_the_tenant_and_never_echoes_upstream_errors(web: Admin) -> None:
    async with web.svc.runtime.pool.connection() as conn:
        await seed_campaign(conn, "acme", "email", 504, 42, {"sent": 3})
    path = "/api/v1/tenants/acme/campaigns/42/report-push"
    assert (await web.call("POST", path, key="globex")).status == 403
    assert (await web.call("POST", path, key=None)).status == 401
    assert (await web.call("POST", "/api/v1/tenants/acme/campaigns/43/report-push")).status == 404
    # acme's Optimove URL answers nothing (port 9) and the client retries: the API answers 202
    # within its wait instead of holding the request, and the push goes on in the background.
    started = time.monotonic()
    slow = await web.call("POST", path, key="acme")
    assert slow.status == 202, slow.text
    assert slow.body == {"tenant_id": "acme", "campaign_id": 42, "status": "running"}
    assert time.monotonic() - started < 8
