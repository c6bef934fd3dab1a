"""Metric definitions: which metrics a message counts in, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from optibridge.optimove.models import MetricID as M
from optibridge.reporting.metrics import MessageFacts, count_metrics, interaction_date, metric_times

T = datetime(2024, 3, 1, 23, 30, tzinfo=UTC)
H = timedelta(hours=1)


def members(f: MessageFacts, mode: str = "sent") -> set[M]:
    return set(metric_times(f, mode))  # type: ignore[arg-type]


def test_a_sent_email_with_no_news_is_delivered_when_delivery_is_inferred_from_sending() -> None:
    f = MessageFacts("sent", sent_at=T)
    assert members(f, "sent") == {M.SENT, M.DELIVERED}
    assert members(f, "receipts") == {M.SENT}


def test_a_click_implies_open_and_delivery_and_machine_hits_never_reach_the_facts() -> None:
    f = MessageFacts("sent", sent_at=T, opened_at=T + H, clicked_at=T + H)
    assert members(f, "receipts") == {M.SENT, M.DELIVERED, M.OPENED, M.CLICKED}


def test_a_bounce_after_sending_is_bounced_and_not_delivered() -> None:
    f = MessageFacts("sent", sent_at=T, bounced_at=T + H)
    assert members(f) == {M.SENT, M.BOUNCED}


def test_dropped_is_failed_without_bounce_expired_suppressed_or_a_failed_receipt() -> None:
    assert members(MessageFacts("failed", state_at=T)) == {M.DROPPED}
    assert members(MessageFacts("failed", state_at=T, bounced_at=T)) == {M.BOUNCED}
    assert members(MessageFacts("expired", state_at=T)) == {M.DROPPED}
    assert members(MessageFacts("suppressed", state_at=T)) == {M.DROPPED}
    assert members(MessageFacts("sent", sent_at=T, failed_at=T + H), "receipts") == {M.SENT, M.DROPPED}


def test_unsubscribes_and_complaints_count_once_each() -> None:
    f = MessageFacts("sent", sent_at=T, unsubscribed_at=T + H, complained_at=T + 2 * H)
    counts = count_metrics([f, f], "receipts")
    assert counts[M.UNSUBSCRIBED] == 2
    assert counts[M.SPAM_REPORTS] == 2
    assert counts[M.OPENED] == 0
    assert set(counts) == {
        M.SENT,
        M.DELIVERED,
        M.OPENED,
        M.CLICKED,
        M.UNSUBSCRIBED,
        M.DROPPED,
        M.SPAM_REPORTS,
        M.BOUNCED,
    }


def test_interaction_dates_are_utc_days_of_the_first_event() -> None:
    f = MessageFacts("sent", sent_at=T, opened_at=T + H)
    times = metric_times(f, "sent")
    assert interaction_date(times[M.OPENED], T).isoformat() == "2024-03-02"
    assert interaction_date(times[M.DELIVERED], T).isoformat() == "2024-03-01"
    assert interaction_date(None, T).isoformat() == "2024-03-01"
