"""Flow 6 end to end: a sent campaign, a simulated audience acting through the real endpoints, and
the 7-day push schedule driven by an injected clock; the emulator must end up holding exactly
what the audience did, through a restart in the middle of the window."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from reporting_helpers import API_KEY, EMAIL, SCANNER, T0, TENANT, Audience

from optibridge.core.config import Settings
from optibridge.emulator.testing import RunningEmulator
from optibridge.reporting.tasks import run_tick
from optibridge.testing.feedback import MutableClock, add_channel, add_tenant, feedback_stack, seed_campaign

SENT = 120  # customers 1..120 sent; 121..126 failed; 127..129 expired
CAMPAIGN = 7


def template_of(n: int) -> int:
    return 1 if n % 2 == 1 else 2  # round-robin over (1, 2) from customer 1


def expected_metrics(a: Audience) -> dict[tuple[int, int], int]:
    """Independent oracle: the metric definitions of docs/reporting.md written out as sets."""
    sent = set(range(1, SENT + 1))
    dropped = set(range(SENT + 1, SENT + 10))
    opened = a.opened | a.clicked
    delivered = (sent - a.bounced) | opened
    per_metric = {
        0: sent,
        1: delivered,
        2: opened,
        3: a.clicked,
        4: a.unsubscribed,
        5: dropped,
        6: a.complained,
        9: a.bounced,
    }
    out = {}
    for metric, members in per_metric.items():
        for template in (1, 2):
            out[(template, metric)] = sum(1 for n in members if template_of(n) == template)
    return out


def expected_interactions(a: Audience) -> dict[tuple[int, int], set[str]]:
    sent = set(range(1, SENT + 1))
    opened = a.opened | a.clicked
    per_event = {
        1: (sent - a.bounced) | opened,
        2: opened,
        3: a.clicked,
        4: a.unsubscribed,
        5: set(range(SENT + 1, SENT + 10)),
        6: a.complained,
        9: a.bounced,
    }
    out: dict[tuple[int, int], set[str]] = {}
    for event, members in per_event.items():
        for template in (1, 2):
            customers = {f"C{n}" for n in members if template_of(n) == template}
            if customers:
                out[(template, event)] = customers
    return out


def accumulate(seen: dict[tuple[int, int], set[str]], now: dict[tuple[int, int], set[str]]) -> None:
    """Interaction lists only grow: Optimove has no call to take a customer out of one (a customer
    reported delivered who bounces later stays in the delivered list; the total goes down)."""
    for key, customers in now.items():
        seen.setdefault(key, set()).update(customers)


async def emulator_metrics(emu: RunningEmulator) -> dict[tuple[int, int], int]:
    return {
        (m["template_id"], m["metric_id"]): int(m["value"])
        for m in await emu.control.metrics(TENANT)
        if m["campaign_id"] == CAMPAIGN and m["channel_id"] == EMAIL
    }


async def emulator_interactions(
    emu: RunningEmulator,
) -> tuple[dict[tuple[int, int], set[str]], dict[Any, int]]:
    merged: dict[tuple[int, int], set[str]] = defaultdict(set)
    calls = {}
    for i in await emu.control.interactions(TENANT):
        merged[(i["template_id"], i["event_id"])].update(i["customer_ids"])
        calls[(i["template_id"], i["event_id"], i["date"])] = i["calls"]
    return dict(merged), calls


async def _seed(settings: Settings, emu: RunningEmulator, clock: MutableClock) -> None:
    async with feedback_stack(settings, clock) as stack, stack.runtime.pool.connection() as conn:
        await add_tenant(conn, stack.runtime.box, TENANT, emu.base_url, API_KEY)
        await add_channel(conn, TENANT, "email", "email", EMAIL, feedback={"report_preferences": True})
        common: dict[str, Any] = {
            "tenant_id": TENANT,
            "channel_name": "email",
            "channel_kind": "email",
            "channel_id": EMAIL,
            "campaign_id": CAMPAIGN,
            "sent_at": T0,
            "templates": (1, 2),
        }
        await seed_campaign(conn, customers=SENT, **common)
        await seed_campaign(conn, customers=6, first=SENT + 1, state="failed", **common)
        await seed_campaign(conn, customers=3, first=SENT + 7, state="expired", **common)
        # Another campaign still sending: it must not be reported yet.
        await seed_campaign(conn, customers=2, state="pending", **{**common, "campaign_id": 8})


async def _messages(stack: Any) -> dict[int, Any]:
    async with stack.runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id, customer_id, template_id, address FROM messages WHERE campaign_id = %s",
                (CAMPAIGN,),
            )
        ).fetchall()
    from optibridge.testing.feedback import SeededMessage

    return {
        int(r["customer_id"][1:]): SeededMessage(r["id"], r["customer_id"], r["template_id"], r["address"])
        for r in rows
    }


async def test_the_emulator_holds_exactly_what_the_audience_did_across_a_restart(
    settings: Settings, emulator: RunningEmulator, clock: MutableClock
) -> None:
    await _seed(settings, emulator, clock)
    finished = T0 + timedelta(hours=2)
    state: dict[str, set[int]] = {}

    # --- day 1: first hits, then the first push as soon as sending is over -----------------
    async with feedback_stack(settings, clock) as stack:
        audience = Audience(stack, await _messages(stack))
        clock.now = T0 + timedelta(hours=1)
        await audience.open(range(1, 41, 2), times=2)  # 20 opens, each reloaded
        await audience.click([3, 4, 10, 11, 50])  # clicks imply opens
        await audience.click([60, 61], headers=SCANNER)  # a scanner's: not counted
        await audience.settle()

        first = await run_tick(stack.runtime, finished)
        assert first.discovered == 1
        assert len(first.pushed) == 1
        assert not first.failed
        assert await emulator_metrics(emulator) == expected_metrics(audience)
        got, calls = await emulator_interactions(emulator)
        reported: dict[tuple[int, int], set[str]] = {}
        accumulate(reported, expected_interactions(audience))
        assert got == reported
        assert set(calls.values()) == {1}

        # --- a few hours later: more feedback, replays, duplicate provider reports ----------
        clock.now = T0 + timedelta(hours=5)
        await audience.open(range(1, 41, 2))  # replays only: nothing new
        await audience.unsubscribe([5, 6, 7])
        await audience.report("bounced", [100, 101, 102])
        await audience.report("complained", [9])
        await audience.settle()
        not_due = await run_tick(stack.runtime, finished + timedelta(hours=3))
        assert not_due.pushed == []
        assert not_due.discovered == 0
        second = await run_tick(stack.runtime, finished + timedelta(hours=4))
        assert len(second.pushed) == 1
        assert await emulator_metrics(emulator) == expected_metrics(audience)
        got, calls = await emulator_interactions(emulator)
        accumulate(reported, expected_interactions(audience))
        assert got == reported
        # Lists that gained no one were not sent again.
        assert calls[(1, 2, "2024-03-01")] == 1
        assert calls[(2, 3, "2024-03-01")] == 1
        for name in ("opened", "clicked", "unsubscribed", "bounced", "complained"):
            state[name] = set(getattr(audience, name))
        prefs = await emulator.control.preferences(TENANT)
        # Opt-outs (mode 2) for the unsubscribes and the complaint; bounces are not opt-outs.
        assert sorted((p["customer_id"], p["communication_mode"], p["channel_id"]) for p in prefs) == [
            ("C5", 2, EMAIL),
            ("C6", 2, EMAIL),
            ("C7", 2, EMAIL),
            ("C9", 2, EMAIL),
        ]

    # --- "restart": a new runtime and app on the same database, days later ------------------
    clock.now = T0 + timedelta(days=3, hours=1)
    async with feedback_stack(settings, clock) as stack:
        audience = Audience(stack, await _messages(stack))
        for name, members in state.items():
            getattr(audience, name).update(members)
        audience.hits = len(audience.opened | audience.clicked) + 2  # hits stored so far, incl. scanner's
        await audience.open([80, 81])
        await audience.click([81])
        await audience.settle()
        third = await run_tick(stack.runtime, clock.now)
        assert len(third.pushed) == 1
        assert await emulator_metrics(emulator) == expected_metrics(audience)
        got, calls = await emulator_interactions(emulator)
        accumulate(reported, expected_interactions(audience))
        assert got == reported
        assert calls[(1, 2, "2024-03-04")] == 1  # the day-4 opens went under their own date

        # --- the final push at the end of the window, then nothing more -----------------------
        final_at = finished + timedelta(days=7)
        assert len((await run_tick(stack.runtime, final_at - timedelta(minutes=1))).pushed) <= 1
        last = await run_tick(stack.runtime, final_at)
        assert len(last.pushed) == 1
        after = await run_tick(stack.runtime, final_at + timedelta(days=1))
        assert after.pushed == []
        assert after.discovered == 0
        async with stack.runtime.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT state, next_push_at, pushes FROM report_schedules WHERE campaign_id = %s",
                    (CAMPAIGN,),
                )
            ).fetchone()
            others = await (
                await conn.execute("SELECT count(*) AS n FROM report_schedules WHERE campaign_id = 8")
            ).fetchone()
        assert row is not None
        assert row["state"] == "done"
        assert row["next_push_at"] is None
        assert others is not None
        assert others["n"] == 0
    assert await emulator_metrics(emulator) == expected_metrics(audience)
