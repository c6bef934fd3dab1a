"""One-click unsubscribe of a message whose row the retention job purged, over real HTTP: the
purge keeps its recipient (`unsubscribe_keys`), so the link still suppresses the customer and the
address for `unsubscribe_keep_days` after sending (the next campaign's rows are then blocked by
the dispatcher's own check), and records nothing once that has passed; `customers forget` clears
the kept recipient."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from feedback_helpers import EMAIL, T0, TENANT, Seeded

from optibridge.feedback.links import tracking_urls
from optibridge.feedback.suppression import suppressed
from optibridge.retention.forget import forget_customer
from optibridge.retention.policy import RetentionPolicy
from optibridge.retention.purge import purge_campaigns
from optibridge.testing.feedback import seed_campaign

ONE_CLICK = {
    "data": "List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}
POLICY = RetentionPolicy()  # defaults: 7-day window, 3-day margin, unsubscribes kept 60 days


async def _purge_campaign_7(seeded: Seeded, now: datetime) -> None:
    """Campaign 7 (sent at T0, never scheduled for reports) left alone long enough to be purged."""
    async with seeded.stack.runtime.pool.connection() as conn:
        await conn.execute("UPDATE campaigns SET updated_at = %s WHERE campaign_id = 7", (T0,))
    report = await purge_campaigns(seeded.stack.runtime.pool, now, POLICY, vacuum=False)
    assert len(report.campaigns) == 3  # t1's e-mail and SMS channels, t2's e-mail
    async with seeded.stack.runtime.pool.connection() as conn:
        left = await (await conn.execute("SELECT count(*) AS n FROM messages")).fetchone()
    assert left == {"n": 0}


async def _unsubscribe(seeded: Seeded, index: int) -> None:
    m = seeded.email[index]
    url = tracking_urls(seeded.stack.base_url, m.id, seeded.stack.keys, issued_at=T0).unsubscribe_url
    async with seeded.stack.session.post(url, **ONE_CLICK) as resp:
        assert resp.status == 200
        assert "unsubscribed" in (await resp.text()).lower()


async def _blocked_in_next_campaign(seeded: Seeded) -> set[str]:
    """What the dispatcher's check (`suppressed`, asked per slice before sending) blocks among the
    rows of the next campaign, which targets the same customers at the same addresses."""
    async with seeded.stack.runtime.pool.connection() as conn:
        rows = await seed_campaign(
            conn,
            tenant_id=TENANT,
            channel_name="email",
            channel_kind="email",
            channel_id=EMAIL,
            campaign_id=8,
            customers=10,
            sent_at=seeded.clock(),
            state="pending",
        )
        return await suppressed(
            conn,
            TENANT,
            "email",
            addresses=[r.address for r in rows],
            customer_ids=[r.customer_id for r in rows],
        )


async def _rows(seeded: Seeded, sql: str) -> list[dict[str, Any]]:
    async with seeded.stack.runtime.pool.connection() as conn:
        return list(await (await conn.execute(sql)).fetchall())


async def test_a_purged_campaigns_unsubscribe_link_still_suppresses_the_customer(seeded: Seeded) -> None:
    await _purge_campaign_7(seeded, T0 + timedelta(days=11))
    seeded.clock.now = T0 + timedelta(days=25)  # past the purge, within CAN-SPAM's 30 days
    await _unsubscribe(seeded, 2)  # C3, c3@example.test
    await _unsubscribe(seeded, 2)  # a second click changes nothing and still answers done
    assert await _blocked_in_next_campaign(seeded) == {"C3", "c3@example.test"}
    # Reporting is over: no event; the opt-out still goes to Optimove (the channel reports them).
    assert await _rows(seeded, "SELECT kind FROM message_events") == []
    outbox = await _rows(seeded, "SELECT customer_id, reason FROM preference_outbox")
    assert outbox == [{"customer_id": "C3", "reason": "unsubscribed"}]
    entries = await _rows(seeded, "SELECT kind, value, reason FROM suppressions ORDER BY kind")
    assert entries == [
        {"kind": "address", "value": "c3@example.test", "reason": "unsubscribed"},
        {"kind": "customer", "value": "C3", "reason": "unsubscribed"},
    ]


async def test_after_unsubscribe_keep_days_the_link_records_nothing(seeded: Seeded) -> None:
    await _purge_campaign_7(seeded, T0 + timedelta(days=11))
    # Past 60 days after sending, before any retention run pruned the kept recipients: refused.
    seeded.clock.now = T0 + timedelta(days=60, minutes=1)
    await _unsubscribe(seeded, 4)
    assert await _rows(seeded, "SELECT * FROM suppressions") == []
    # The next run prunes them (every campaign-7 recipient: 10 + 10 SMS + 3 of t2).
    report = await purge_campaigns(seeded.stack.runtime.pool, seeded.clock.now, POLICY, vacuum=False)
    assert report.pruned == {"unsubscribe_keys": 23}
    assert await _rows(seeded, "SELECT * FROM unsubscribe_keys") == []
    await _unsubscribe(seeded, 5)
    assert await _rows(seeded, "SELECT * FROM suppressions") == []
    assert await _blocked_in_next_campaign(seeded) == set()


async def test_forget_clears_the_kept_recipient_and_keeps_the_suppression_hashed(seeded: Seeded) -> None:
    await _purge_campaign_7(seeded, T0 + timedelta(days=11))
    seeded.clock.now = T0 + timedelta(days=12)
    await _unsubscribe(seeded, 0)  # C1
    removed = await forget_customer(seeded.stack.runtime.pool, TENANT, "C1")
    assert removed["unsubscribe_keys"] == 2  # their e-mail and SMS messages
    assert removed["suppressions (kept hashed)"] == 2
    kept = await _rows(seeded, "SELECT customer_id, address FROM unsubscribe_keys WHERE customer_id = 'C1'")
    assert kept == []
    named = await _rows(seeded, "SELECT value FROM suppressions WHERE value IN ('C1', 'c1@example.test')")
    assert named == []
    assert await _blocked_in_next_campaign(seeded) == {"C1", "c1@example.test"}
