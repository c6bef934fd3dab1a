"""The status word of each stage of a campaign's life, and the buttons offered with it (pure:
campaigns.stage.stage_of, campaigns.actions.offered/decide_push)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from optibridge.campaigns import decide
from optibridge.campaigns.actions import decide_push, offered
from optibridge.campaigns.stage import ReportingFacts, stage_of

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
FINISHED = NOW - timedelta(hours=1)


def schedule(state: str = "active", *, finished: datetime = FINISHED, **kw: object) -> ReportingFacts:
    return ReportingFacts(
        state=state,
        finished_at=finished,
        final_at=finished + timedelta(days=7),
        next_push_at=kw.pop("next_push_at", finished + timedelta(hours=4)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_notified_then_ingesting() -> None:
    s = stage_of(status="awaiting", paused=False, counts={}, now=NOW)
    assert (s.word, s.actions) == ("notified", ("pause", "cancel"))
    s = stage_of(status="ingesting", paused=False, counts={"pending": 40}, now=NOW)
    assert s.word == "ingesting"
    assert "40" in s.detail


def test_waiting_for_the_first_send_time_then_sending() -> None:
    later = NOW + timedelta(minutes=30)
    s = stage_of(status="ingested", paused=False, counts={"pending": 10}, first_due=later, now=NOW)
    assert s.word == "waiting"
    assert "2026-11-29 12:30 UTC" in s.detail
    assert s.actions == ("pause", "cancel")  # nothing to report yet: no push
    s = stage_of(status="ingested", paused=False, counts={"pending": 10}, first_due=NOW, now=NOW)
    assert s.word == "sending"
    s = stage_of(status="ingested", paused=False, counts={"claimed": 3, "sent": 7}, now=NOW)
    assert (s.word, s.open_messages, s.reportable) == ("sending", 3, 7)
    assert s.actions == ("pause", "cancel", "push")


def test_some_sent_and_the_rest_due_later_is_still_sending_with_the_next_time() -> None:
    later = NOW + timedelta(hours=2)
    s = stage_of(status="ingested", paused=False, counts={"pending": 5, "sent": 5}, first_due=later, now=NOW)
    assert s.word == "sending"
    assert "next send at 2026-11-29 14:00 UTC" in s.detail


def test_every_message_sent_says_sent_not_ingested_and_offers_no_pause_or_cancel() -> None:
    s = stage_of(status="ingested", paused=False, counts={"sent": 2000}, now=NOW)
    assert s.word == "sent"
    assert s.actions == ("push",)


def test_reporting_day_and_next_push_then_closed() -> None:
    s = stage_of(status="ingested", paused=False, counts={"sent": 5}, reporting=schedule(), now=NOW)
    assert (s.word, s.reporting_day, s.window_days) == ("reporting", 1, 7)
    assert s.detail == "day 1 of 7, next push at 2026-11-29 15:00 UTC"
    assert s.actions == ("push",)
    day3 = stage_of(
        status="ingested",
        paused=False,
        counts={"sent": 5},
        reporting=schedule(),
        now=FINISHED + timedelta(days=2, hours=1),
    )
    assert day3.reporting_day == 3
    # Late past the window but the final push not made yet: still reporting, on day 7.
    late = stage_of(
        status="ingested",
        paused=False,
        counts={"sent": 5},
        reporting=schedule(),
        now=FINISHED + timedelta(days=9),
    )
    assert (late.word, late.reporting_day) == ("reporting", 7)
    done = stage_of(
        status="ingested",
        paused=False,
        counts={"sent": 5},
        reporting=schedule("done", pushes=43, last_push_at=FINISHED + timedelta(days=7)),
        now=NOW + timedelta(days=8),
    )
    assert done.word == "closed"
    assert "43 push(es)" in done.detail
    assert done.actions == ()


def test_reporting_failures_are_told_and_a_given_up_schedule_is_closed() -> None:
    s = stage_of(
        status="ingested",
        paused=False,
        counts={"sent": 5},
        reporting=schedule(failures=2, last_error="OptimoveUnavailable: 503"),
        now=NOW,
    )
    assert s.word == "reporting"
    assert "2 failed attempt(s), last: OptimoveUnavailable: 503" in s.detail
    gone = stage_of(
        status="ingested",
        paused=False,
        counts={"sent": 5},
        reporting=schedule("abandoned", failures=9, last_error="boom"),
        now=NOW,
    )
    assert gone.word == "closed"
    assert "given up" in gone.detail
    assert gone.actions == ()


def test_held_paused_canceled_failed() -> None:
    held = stage_of(
        status="ingested", paused=False, counts={"pending": 4}, hold_until=NOW + timedelta(hours=1), now=NOW
    )
    assert held.word == "held"
    assert held.actions == ("pause", "cancel")
    over = stage_of(
        status="ingested", paused=False, counts={"pending": 4}, hold_until=NOW - timedelta(seconds=1), now=NOW
    )
    assert over.word == "waiting"
    paused = stage_of(status="ingested", paused=True, counts={"pending": 4, "sent": 1}, now=NOW)
    assert (paused.word, paused.actions) == ("paused", ("resume", "cancel", "push"))
    canceled = stage_of(status="canceled", paused=False, counts={"canceled": 9, "sent": 1}, now=NOW)
    assert canceled.word == "canceled"
    assert canceled.actions == ("push",)  # results of the one sent are still reported
    nothing = stage_of(status="canceled", paused=False, counts={"canceled": 9}, now=NOW)
    assert nothing.actions == ()
    failed = stage_of(status="failed", paused=False, counts={}, now=NOW, error="GetCustomers: 500")
    assert (failed.word, failed.detail) == ("failed", "GetCustomers: 500")


def test_a_finished_campaign_ignores_a_leftover_pause_flag_and_a_hold() -> None:
    s = stage_of(
        status="ingested",
        paused=True,
        counts={"sent": 3},
        hold_until=NOW + timedelta(hours=1),
        reporting=schedule(),
        now=NOW,
    )
    assert s.word == "reporting"
    assert s.actions == ("resume", "push")  # the flag can still be cleared


def test_nothing_left_to_send_and_nothing_sent_is_closed() -> None:
    s = stage_of(status="ingested", paused=False, counts={}, now=NOW)
    assert (s.word, s.actions) == ("closed", ())


@pytest.mark.parametrize(
    ("status", "paused", "open_messages"),
    [
        (status, paused, n)
        for status in ("awaiting", "ingesting", "ingested", "failed", "canceled")
        for paused in (False, True)
        for n in (0, 5)
    ],
)
def test_buttons_are_exactly_what_decide_carries_out(status: str, paused: bool, open_messages: int) -> None:
    buttons = offered(status=status, paused=paused, open_messages=open_messages, reportable=1, closed=False)
    for action in ("pause", "resume", "cancel"):
        step = decide(action, status=status, paused=paused, open_messages=open_messages)  # type: ignore[arg-type]
        assert (action in buttons) == (step in ("pause", "resume", "cancel")), (action, step)
    assert "push" in buttons


def test_pause_of_a_finished_campaign_is_refused_like_its_cancel() -> None:
    assert decide("pause", status="ingested", paused=False, open_messages=0) == "finished"
    assert decide("pause", status="ingested", paused=False, open_messages=2) == "pause"
    assert decide("pause", status="ingesting", paused=False, open_messages=0) == "pause"  # more to come


def test_push_applies_once_something_left_the_queue_until_the_window_closes() -> None:
    assert decide_push(reportable=0, closed=False) == "nothing to report"
    assert decide_push(reportable=1, closed=False) == "push"
    assert decide_push(reportable=1, closed=True) == "closed"


def test_a_push_long_past_its_time_is_called_overdue() -> None:
    late = NOW + timedelta(hours=5)
    s = stage_of(status="ingested", paused=False, counts={"sent": 5}, reporting=schedule(), now=late)
    assert s.detail.endswith("next push at 2026-11-29 15:00 UTC (overdue: are the workers running?)")
    on_time = stage_of(
        status="ingested",
        paused=False,
        counts={"sent": 5},
        reporting=schedule(),
        now=FINISHED + timedelta(hours=4, minutes=1),
    )
    assert "overdue" not in on_time.detail
