"""A campaign's whole life for the dashboard: its stage (stage.py) and the timing behind the charts
(sends per minute against due times, opens and clicks per hour), the current rate and what report
pushes Optimove accepted. Everything is read at `now`, the dashboard's clock (tests move it).

What we counted per metric beside what Optimove received is reporting's (reporting.show); the
dashboard puts the two side by side, this module does not compute metrics.

A purged campaign (docs/scaling.md "Retention") has no message rows: `with_purged_totals` gives
its progress from the totals the purge kept, so its stage still reads `closed` with what it sent,
and the story carries `purged_at` for the page to say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from optibridge.campaigns.progress import RATE_WINDOW_S, Campaign, CampaignDetail, compute_progress
from optibridge.campaigns.stage import ReportingFacts, Stage, stage_of
from optibridge.store import campaign_story as store
from optibridge.store import retention as retention_store
from optibridge.store.campaign_story import AcceptedPush, CampaignKey, HourCounts, MinuteCounts, SendFacts
from optibridge.store.campaigns import Conn
from optibridge.store.reports import PushRecord, push_history

__all__ = [
    "Story",
    "reporting_facts",
    "stage_for",
    "stages_for",
    "story",
    "with_purged_progress",
    "with_purged_totals",
]


def reporting_facts(inputs: store.StageInputs | None) -> ReportingFacts | None:
    if inputs is None or inputs.schedule_state is None:
        return None
    if inputs.finished_at is None or inputs.final_at is None:
        return None
    return ReportingFacts(
        state=inputs.schedule_state,
        finished_at=inputs.finished_at,
        final_at=inputs.final_at,
        next_push_at=inputs.next_push_at,
        last_push_at=inputs.last_push_at,
        pushes=inputs.pushes,
        failures=inputs.failures,
        last_error=inputs.last_error,
    )


def stage_for(c: Campaign, inputs: store.StageInputs | None, now: datetime) -> Stage:
    return stage_of(
        status=c.status,
        paused=c.paused,
        counts=c.progress.counts,
        now=now,
        first_due=inputs.first_due if inputs else None,
        hold_until=inputs.hold_until if inputs else None,
        reporting=reporting_facts(inputs),
        error=c.error,
    )


async def stages_for(conn: Conn, campaigns: list[Campaign], now: datetime) -> dict[CampaignKey, Stage]:
    inputs = await store.stage_inputs(conn, [c.key for c in campaigns])
    return {c.key: stage_for(c, inputs.get(c.key), now) for c in campaigns}


@dataclass(frozen=True)
class Story:
    stage: Stage
    schedule: ReportingFacts | None
    facts: SendFacts
    rate_per_s: float  # sent in the last minute (to `now`), per second
    eta_s: float | None  # what is still to go at that rate
    minutes: list[MinuteCounts] = field(default_factory=list)
    hours: list[HourCounts] = field(default_factory=list)
    pushes: list[AcceptedPush] = field(default_factory=list)  # what Optimove holds, by push time
    history: list[PushRecord] = field(default_factory=list)  # every push attempt, with the answer
    purged_at: datetime | None = None  # message rows summarized and deleted (counts: totals kept)

    @property
    def accepted_at(self) -> dict[datetime, AcceptedPush]:
        return {p.pushed_at: p for p in self.pushes}


async def story(conn: Conn, c: Campaign, now: datetime, *, charts: bool = True) -> Story:
    """`charts=False` leaves out the per-minute, per-hour and push rows (the 2 s progress refresh)."""
    inputs = (await store.stage_inputs(conn, [c.key])).get(c.key)
    facts = await store.send_facts(conn, c.key, now=now, window_s=RATE_WINDOW_S, lateness=charts)
    stage = stage_for(c, inputs, now)
    rate = facts.sent_in_window / RATE_WINDOW_S
    remaining = stage.open_messages
    eta = (remaining / rate if rate > 0 else None) if remaining else 0.0
    purged_at = await retention_store.purged_at(conn, retention_store.CampaignKey(*c.key))
    out = Story(stage, reporting_facts(inputs), facts, round(rate, 2), eta, purged_at=purged_at)
    if not charts:
        return out
    return Story(
        stage,
        out.schedule,
        facts,
        out.rate_per_s,
        eta,
        minutes=await store.send_minutes(conn, c.key),
        hours=await store.engagement_hours(conn, c.key),
        pushes=await store.accepted_pushes(conn, c.key),
        history=await push_history(conn, *c.key),
        purged_at=purged_at,
    )


async def with_purged_progress(conn: Conn, campaigns: list[Campaign]) -> list[Campaign]:
    """A page of campaigns, the purged ones with their progress from the totals kept."""
    states = await retention_store.purged_states(
        conn, [retention_store.CampaignKey(*c.key) for c in campaigns]
    )
    return [
        replace(c, progress=compute_progress(kept, 0))
        if (kept := states.get(retention_store.CampaignKey(*c.key))) is not None
        else c
        for c in campaigns
    ]


async def with_purged_totals(conn: Conn, d: CampaignDetail) -> tuple[CampaignDetail, datetime | None]:
    """The detail of a purged campaign with its progress (whole and per template) from the totals
    the purge kept, and when it was purged; any other campaign's unchanged, with None. Failures by
    reason are gone with the rows (the totals keep states, not reasons)."""
    key = retention_store.CampaignKey(*d.campaign.key)
    purged_at = await retention_store.purged_at(conn, key)
    if purged_at is None:
        return d, None
    totals = await retention_store.campaign_totals(conn, key)
    states: dict[str, int] = {}
    for t in totals:
        for state, n in t.states.items():
            states[state] = states.get(state, 0) + n
    # No rate: nothing was sent lately (0 in the window).
    campaign = replace(d.campaign, progress=compute_progress(states, 0))
    templates = {t.template_id: compute_progress(t.states, 0) for t in totals}
    return CampaignDetail(campaign, templates, []), purged_at
