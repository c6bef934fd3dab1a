"""Signed engagement events against the real emulator: its signature check accepts our reports and
refuses a wrong signature (which the service records as a refused push), events past the 7-day limit
are never sent, and a campaign's interactions (opens, clicks through the tracking endpoints) reach
the emulator as events in `events` mode, and both ways in `both` mode, each exactly once.

Times are near the real clock: the emulator checks the age rule against its own (system) clock."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from reporting_helpers import API_KEY, EMAIL, TENANT, Audience

from optibridge.core.config import Settings
from optibridge.core.engagement_settings import EngagementConfig
from optibridge.core.reporting_settings import reporting_settings
from optibridge.emulator.testing import RunningEmulator
from optibridge.feedback.links import tracking_urls
from optibridge.optimove import OptimoveAuthError, OptimoveBadRequestError, RetryPolicy
from optibridge.optimove.engagement_events import (
    SIGNATURE_HEADER,
    SIGNATURE_VERSION_HEADER,
    EngagementClient,
    EngagementClientConfig,
    EngagementEvent,
    encode_events,
    sign,
)
from optibridge.reporting.engagement_events import push_reports
from optibridge.reporting.tasks import run_tick
from optibridge.store import engagement_events as engagement_store
from optibridge.testing.feedback import (
    FeedbackStack,
    MutableClock,
    SeededMessage,
    add_channel,
    add_tenant,
    feedback_stack,
    seed_campaign,
)

TOKEN = "engagement-token-1"
CAMPAIGN = 31
SENT = 20  # C1..C20 sent, templates 1 and 2 in turn; C21..C23 failed
# A day ago: recent enough for the emulator's 7-day rule, on its own clock.
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock(T0)


@pytest.fixture
async def emulator_with_token(emulator: RunningEmulator) -> RunningEmulator:
    await emulator.control.request("PUT", f"/tenants/{TENANT}/engagement-token", {"token": TOKEN})
    return emulator


async def emulator_events(emu: RunningEmulator) -> dict[str, Any]:
    result: dict[str, Any] = await emu.control.request("GET", f"/tenants/{TENANT}/engagement-events")
    return result


def metric_url(emu: RunningEmulator) -> str:
    return f"{emu.base_url}/metric-{{tenant_id}}"


def an_event(customer: str, occurred: datetime, metric: int = 2) -> EngagementEvent:
    return EngagementEvent(
        metric, customer, occurred, CAMPAIGN, EMAIL, 1, f"00000000-0000-0000-0000-{customer[1:]:0>12}"
    )


# -- the client against the emulator's checks ---------------------------------------------------


async def test_a_signed_report_is_accepted_and_a_wrong_signature_is_refused_once(
    emulator_with_token: RunningEmulator,
) -> None:
    emu = emulator_with_token
    base = f"{emu.base_url}/metric-{TENANT}"
    now = datetime.now(UTC)
    events = [an_event(f"C{n}", now - timedelta(hours=n)) for n in (1, 2, 3)]
    async with EngagementClient(EngagementClientConfig(base, TOKEN, events_per_request=2)) as client:
        assert await client.save_events(events) == 3
        assert client.requests_sent == 2  # 2 + 1 events
    got = await emulator_events(emu)
    assert [(e["customer"], e["event"], e["category"]) for e in got["events"]] == [
        ("C1", "opened", "metric"),
        ("C2", "opened", "metric"),
        ("C3", "opened", "metric"),
    ]
    assert got["events"][0]["context"]["campaign_id"] == CAMPAIGN
    assert got["accepted_requests"] == 2

    # Another token: refused with 403, and not hammered (a 4xx is not retried).
    wrong = EngagementClientConfig(base, "not-the-token", retry=RetryPolicy(initial_delay_s=0.01))
    async with EngagementClient(wrong) as client:
        with pytest.raises(OptimoveAuthError) as refused:
            await client.save_events(events)
        assert client.requests_sent == 1
    assert refused.value.status == 403
    got = await emulator_events(emu)
    assert len(got["events"]) == 3
    assert got["refused"] == {"403": 1}

    # An event past the 7-day limit, correctly signed, is refused whole (400): nothing kept.
    old = [events[0], an_event("C9", now - timedelta(days=7, minutes=1))]
    async with EngagementClient(EngagementClientConfig(base, TOKEN)) as client:
        with pytest.raises(OptimoveBadRequestError):
            await client.save_batch(old)
    assert len((await emulator_events(emu))["events"]) == 3


async def test_the_emulator_wants_the_version_header_and_routes_by_host(
    emulator_with_token: RunningEmulator,
) -> None:
    emu = emulator_with_token
    body = encode_events([an_event("C1", datetime.now(UTC))])
    signed = {SIGNATURE_HEADER: sign(body, TOKEN), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emu.base_url}/metric-{TENANT}/api/saveEvent", data=body, headers=signed) as r:
            assert r.status == 401  # no X-Optimove-Signature-Version
        headers = {**signed, SIGNATURE_VERSION_HEADER: "1"}
        async with http.post(
            f"{emu.base_url}/metric-{TENANT}/api/saveEvent", data=b"{", headers=headers
        ) as r:
            assert r.status == 403  # the signature covers these bytes, not the others
        host = {**headers, "Host": f"metric-{TENANT}.optimove.net"}
        async with http.post(f"{emu.base_url}/api/saveEvent", data=body, headers=host) as r:
            assert r.status == 200
        async with http.post(f"{emu.base_url}/metric-nobody/api/saveEvent", data=body, headers=headers) as r:
            assert r.status == 404
        garbage = b"[1]"
        bad = {**headers, SIGNATURE_HEADER: sign(garbage, TOKEN)}
        async with http.post(f"{emu.base_url}/metric-{TENANT}/api/saveEvent", data=garbage, headers=bad) as r:
            assert r.status == 400
            assert "event 0" in (await r.json())["message"]
    assert len((await emulator_events(emu))["events"]) == 1


# -- the service ----------------------------------------------------------------------------------


class RecentAudience(Audience):
    """The shared audience, with tracking links issued at this module's T0."""

    def _urls(self, n: int) -> object:
        return tracking_urls(self.stack.base_url, self.messages[n].id, self.stack.keys, issued_at=T0)


async def seed(
    stack: FeedbackStack, emu: RunningEmulator, *, mode: str, token: str = TOKEN, sent_at: datetime = T0
) -> dict[int, SeededMessage]:
    common: dict[str, Any] = {
        "tenant_id": TENANT,
        "channel_name": "email",
        "channel_kind": "email",
        "channel_id": EMAIL,
        "campaign_id": CAMPAIGN,
        "sent_at": sent_at,
        "templates": (1, 2),
    }
    async with stack.runtime.pool.connection() as conn:
        await add_tenant(conn, stack.runtime.box, TENANT, emu.base_url, API_KEY)
        await add_channel(conn, TENANT, "email", "email", EMAIL)
        sent = await seed_campaign(conn, customers=SENT, **common)
        await seed_campaign(conn, customers=3, first=SENT + 1, state="failed", **common)
        await engagement_store.put(
            conn,
            stack.runtime.box,
            TENANT,
            EngagementConfig.model_validate(
                {"mode": mode, "metric_tenant_id": TENANT, "base_url": metric_url(emu), "token": token}
            ),
        )
    return {int(m.customer_id[1:]): m for m in sent}


def pairs(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((e["customer"], e["event"]) for e in events)


def expected_pairs(a: Audience) -> Counter[tuple[str, str]]:
    sent = range(1, SENT + 1)
    out: Counter[tuple[str, str]] = Counter()
    for n in sent:
        out[(f"C{n}", "sent")] += 1
        out[(f"C{n}", "delivered")] += 1  # e-mail without bounces: delivered when sent
    for n in a.opened | a.clicked:
        out[(f"C{n}", "opened")] += 1
    for n in a.clicked:
        out[(f"C{n}", "clicked")] += 1
    for n in a.unsubscribed:
        out[(f"C{n}", "unsubscribed")] += 1
    for n in range(SENT + 1, SENT + 4):
        out[(f"C{n}", "dropped")] += 1
    return out


async def test_in_events_mode_interactions_reach_the_emulator_as_events_exactly_once(
    settings: Settings, emulator_with_token: RunningEmulator, clock: MutableClock
) -> None:
    emu = emulator_with_token
    async with feedback_stack(settings, clock) as stack:
        audience = RecentAudience(stack, await seed(stack, emu, mode="events"))
        clock.now = T0 + timedelta(hours=1)
        await audience.open(range(1, 7))
        await audience.click([3, 7])  # 7 clicks without an open first: opened too
        await audience.unsubscribe([10])
        await audience.settle()

        first = await run_tick(stack.runtime, T0 + timedelta(hours=2))
        assert first.failed == []
        assert len(first.pushed) == 1
        got = await emulator_events(emu)
        assert pairs(got["events"]) == expected_pairs(audience)
        by_customer = {(e["customer"], e["event"]): e for e in got["events"]}
        opened = by_customer[("C3", "opened")]
        assert opened["context"] == {
            "campaign_id": CAMPAIGN,
            "channel_id": EMAIL,
            "template_id": 1,
            "metric_id": 2,
            "event_time": opened["timestamp"],
            "message_id": str(audience.messages[3].id),
        }
        # Events mode: no classic call at all.
        assert await emu.control.metrics(TENANT) == []
        assert await emu.control.interactions(TENANT) == []

        # Hours later: one new click; the next push sends that alone (no event twice).
        clock.now = T0 + timedelta(hours=5)
        await audience.click([12])
        await audience.settle()
        second = await run_tick(stack.runtime, T0 + timedelta(hours=6, minutes=1))
        assert len(second.pushed) == 1
        got = await emulator_events(emu)
        assert pairs(got["events"]) == expected_pairs(audience)
        assert max(pairs(got["events"]).values()) == 1
        async with stack.runtime.pool.connection() as conn:
            counts = await engagement_store.counts(conn, TENANT, EMAIL, CAMPAIGN)
        assert counts == {"sent": sum(expected_pairs(audience).values())}


async def test_in_both_mode_the_classic_calls_and_the_events_are_made(
    settings: Settings, emulator_with_token: RunningEmulator, clock: MutableClock
) -> None:
    emu = emulator_with_token
    async with feedback_stack(settings, clock) as stack:
        audience = RecentAudience(stack, await seed(stack, emu, mode="both"))
        clock.now = T0 + timedelta(hours=1)
        await audience.open([1, 2, 4])
        await audience.settle()
        tick = await run_tick(stack.runtime, T0 + timedelta(hours=2))
        assert len(tick.pushed) == 1
        assert pairs((await emulator_events(emu))["events"]) == expected_pairs(audience)
        metrics = {
            (m["template_id"], m["metric_id"]): int(m["value"]) for m in await emu.control.metrics(TENANT)
        }
        assert metrics[(1, 0)] == 10  # sent, template 1 (odd customers)
        assert metrics[(1, 2)] == 1  # opened: C1
        assert metrics[(2, 2)] == 2  # opened: C2, C4
        opened_lists = {
            c for i in await emu.control.interactions(TENANT) if i["event_id"] == 2 for c in i["customer_ids"]
        }
        assert opened_lists == {"C1", "C2", "C4"}


async def test_a_wrong_token_is_recorded_as_a_refused_push_and_nothing_is_marked_sent(
    settings: Settings, emulator_with_token: RunningEmulator, clock: MutableClock
) -> None:
    emu = emulator_with_token
    async with feedback_stack(settings, clock) as stack:
        await seed(stack, emu, mode="events", token="a-wrong-token")
        tick = await run_tick(stack.runtime, T0 + timedelta(hours=2))
        assert len(tick.failed) == 1
        async with stack.runtime.pool.connection() as conn:
            push = await (
                await conn.execute(
                    "SELECT accepted, answer FROM report_pushes WHERE campaign_id = %s", (CAMPAIGN,)
                )
            ).fetchone()
            counts = await engagement_store.counts(conn, TENANT, EMAIL, CAMPAIGN)
        assert push is not None
        assert push["accepted"] is False
        assert "saveEvent" in push["answer"]
        assert "403" in push["answer"]
        assert "a-wrong-token" not in push["answer"]
        assert counts == {}
        got = await emulator_events(emu)
        assert got["events"] == []
        assert got["refused"] == {"403": 1}  # one request: a refused signature is not repeated

        # The token fixed, the schedule's retry sends everything.
        async with stack.runtime.pool.connection() as conn:
            await engagement_store.put(
                conn,
                stack.runtime.box,
                TENANT,
                EngagementConfig.model_validate(
                    {
                        "mode": "events",
                        "metric_tenant_id": TENANT,
                        "token": TOKEN,
                        "base_url": metric_url(emu),
                    }
                ),
            )
        retry = await run_tick(stack.runtime, T0 + timedelta(hours=3))
        assert len(retry.pushed) == 1
        assert len((await emulator_events(emu))["events"]) == SENT * 2 + 3


async def test_events_past_seven_days_are_not_sent_but_counted_once(
    settings: Settings, emulator_with_token: RunningEmulator
) -> None:
    emu = emulator_with_token
    long_ago = datetime.now(UTC) - timedelta(days=8)
    clock = MutableClock(long_ago)
    async with feedback_stack(settings, clock) as stack:
        messages = await seed(stack, emu, mode="events", sent_at=long_ago)
        # Opens today, of a campaign sent 8 days ago: those can still go.
        audience = Audience(stack, messages)
        audience._urls = lambda n: tracking_urls(  # type: ignore[method-assign]
            stack.base_url, messages[n].id, stack.keys, issued_at=long_ago
        )
        clock.now = datetime.now(UTC) - timedelta(minutes=30)
        await audience.open([1, 2])
        await audience.settle()
        cfg = reporting_settings(stack.runtime.settings)
        client = await stack.runtime.clients.get(TENANT)
        for _ in range(2):  # the second push has nothing left to do
            await push_reports(
                stack.runtime, client, TENANT, EMAIL, CAMPAIGN, settings=cfg, now=datetime.now(UTC)
            )
            async with stack.runtime.pool.connection() as conn:
                counts = await engagement_store.counts(conn, TENANT, EMAIL, CAMPAIGN)
            # sent + delivered of 20, dropped of 3: too old; the two opens: sent.
            assert counts == {"too_old": SENT * 2 + 3, "sent": 2}
            got = await emulator_events(emu)
            assert sorted((e["customer"], e["event"]) for e in got["events"]) == [
                ("C1", "opened"),
                ("C2", "opened"),
            ]
            assert got["refused"] == {}
        assert json.dumps(got).count("opened") == 2
