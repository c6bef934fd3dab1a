"""One status word for where a campaign is in its life, for people: pure, from the campaign row, its
message counts, its report schedule and `now` (tests pass any time).

    notified   the notification is stored; ingest has not begun
    ingesting  customers are being read from Optimove into messages
    waiting    everything is ingested, nothing sent yet: the first send time is ahead
    sending    messages are due or being sent (detail: the next send time if the rest is later)
    sent       every message left the queue; the first report push comes at the next tick
    reporting  results go to Optimove on the schedule (detail: day N of W, next push at ...)
    closed     the reporting window is over (or it was given up after failures): nothing more happens
    held       Optimove asked to hold the campaign until a time (dispatcher holds its messages back)
    paused     an operator paused it; messages wait
    canceled   canceled (by Optimove or an operator); results of what was sent are still reported
    failed     ingest failed

The stored `status` (awaiting, ingesting, ingested, failed, canceled) says only how far ingest went;
a campaign whose 2,000 mails were all sent is still 'ingested' there. The buttons come from
`actions.offered`, the same rules the actions themselves run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from optibridge.campaigns.actions import offered
from optibridge.core.states import OPEN_STATES, MessageState

STAGES = (
    "notified",
    "ingesting",
    "waiting",
    "sending",
    "sent",
    "reporting",
    "closed",
    "held",
    "paused",
    "canceled",
    "failed",
)
# The report tick runs every minute: a push this far past its time means no worker is ticking.
OVERDUE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ReportingFacts:
    """A campaign's report schedule (store.reports.CampaignSchedule without the campaign columns).
    `state`: active, done (final push made) or abandoned (retries gave up)."""

    state: str
    finished_at: datetime
    final_at: datetime
    next_push_at: datetime | None = None
    last_push_at: datetime | None = None
    pushes: int = 0
    failures: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Stage:
    word: str
    detail: str  # shown beside the word, e.g. "day 2 of 7, next push at 2026-11-30 16:00 UTC"
    actions: tuple[str, ...]  # pause / resume / cancel / push, as actions.offered allows
    open_messages: int
    reportable: int
    reporting_day: int | None = None
    window_days: int | None = None


def when(t: datetime | None) -> str:
    return "—" if t is None else t.strftime("%Y-%m-%d %H:%M UTC")


def _reporting(r: ReportingFacts, now: datetime) -> tuple[str, str, int | None, int]:
    """(word, detail, day, window days) of a campaign that has a schedule."""
    window_days = max(1, round((r.final_at - r.finished_at) / timedelta(days=1)))
    if r.state == "done":
        return (
            "closed",
            f"reporting window over; {r.pushes} push(es), last at {when(r.last_push_at)}",
            None,
            window_days,
        )
    if r.state == "abandoned":
        return (
            "closed",
            f"reporting given up after {r.failures} failed push(es): {r.last_error or 'no error recorded'}",
            None,
            window_days,
        )
    day = min(window_days, max(1, (now - r.finished_at) // timedelta(days=1) + 1))
    detail = f"day {day} of {window_days}, next push at {when(r.next_push_at)}"
    if r.next_push_at is not None and now - r.next_push_at > OVERDUE:
        detail += " (overdue: are the workers running?)"
    if r.failures:
        detail += f"; {r.failures} failed attempt(s), last: {r.last_error or '?'}"
    return "reporting", detail, day, window_days


def stage_of(
    *,
    status: str,
    paused: bool,
    counts: Mapping[str, int],
    now: datetime,
    first_due: datetime | None = None,
    hold_until: datetime | None = None,
    reporting: ReportingFacts | None = None,
    error: str | None = None,
) -> Stage:
    """`counts`: messages by state; `first_due`: the earliest send time of a pending message."""
    open_messages = sum(int(counts.get(s, 0)) for s in OPEN_STATES)
    claimed = int(counts.get(MessageState.CLAIMED, 0))
    canceled_n = int(counts.get(MessageState.CANCELED, 0))
    total = sum(int(n) for n in counts.values())
    reportable = total - open_messages - canceled_n
    finished = status == "ingested" and open_messages == 0
    word, detail, day, window = "", "", None, None
    if status == "failed":
        word, detail = "failed", error or "ingest failed"
    elif status == "canceled":
        word = "canceled"
        detail = f"{canceled_n:,} message(s) canceled"
        if reporting is not None:
            _, more, day, window = _reporting(reporting, now)
            detail += f"; results: {more}"
    elif paused and not finished:
        word, detail = "paused", f"{open_messages:,} message(s) wait"
    elif hold_until is not None and hold_until > now and not finished:
        word, detail = "held", f"held by Optimove until {when(hold_until)}"
    elif status == "awaiting":
        word, detail = "notified", "waiting for ingest to start"
    elif status == "ingesting":
        word, detail = "ingesting", f"{total:,} message(s) so far"
    elif not finished:
        due_now = claimed > 0 or (first_due is not None and first_due <= now)
        if due_now:
            word, detail = "sending", f"{open_messages:,} to go"
        elif total - open_messages == 0:
            word, detail = "waiting", f"first send at {when(first_due)}"
        else:
            word, detail = "sending", f"{open_messages:,} to go; next send at {when(first_due)}"
    elif reportable == 0:
        word, detail = "closed", "nothing was sent"
    elif reporting is None:
        word, detail = "sent", "every message left the queue; the first report push is due within a minute"
    else:
        word, detail, day, window = _reporting(reporting, now)
    closed = word == "closed" or (reporting is not None and reporting.state != "active")
    actions = offered(
        status=status, paused=paused, open_messages=open_messages, reportable=reportable, closed=closed
    )
    return Stage(word, detail, actions, open_messages, reportable, day, window)
