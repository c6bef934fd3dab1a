"""The delivery triage without a database: which claimed messages are sent, and which are settled
(suppressed, expired, failed, canceled, paused, given back) and why."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from optibridge.core.states import MessageState
from optibridge.delivery import triage as tri
from optibridge.delivery.transitions import RetryPolicy
from optibridge.store.messages import ClaimedMessage

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_lateness=timedelta(hours=2))
TEMPLATES = {7: "compiled-7"}


def msg(
    customer: str = "c1",
    address: str | None = "a@b.test",
    template: int = 7,
    late: timedelta = timedelta(0),
    campaign: int = 1,
) -> ClaimedMessage:
    return ClaimedMessage(
        id=uuid.uuid4(),
        campaign_id=campaign,
        customer_id=customer,
        template_id=template,
        send_at=NOW - late,
        address=address,
        attrs={},
        attempts=1,
    )


def run(*rows: ClaimedMessage, suppressed: set[str] | None = None) -> tri.Triage[str]:
    return tri.triage(rows, now=NOW, policy=POLICY, suppressed=suppressed or set(), templates=TEMPLATES)


def settled(t: tri.Triage[str]) -> dict[uuid.UUID, tuple[str, str | None]]:
    return {d.message.id: (d.transition.state, d.transition.reason) for d in t.settle}


def test_a_due_message_with_its_template_is_sent_with_it() -> None:
    ok = msg()
    t = run(ok)
    assert t.settle == []
    assert [(s.message, s.template) for s in t.send] == [(ok, "compiled-7")]


def test_a_suppressed_address_or_customer_is_suppressed() -> None:
    by_address, by_customer, free = msg(address="x@b.test"), msg(customer="c9"), msg()
    t = run(by_address, by_customer, free, suppressed={"x@b.test", "c9"})
    assert settled(t) == {
        by_address.id: (MessageState.SUPPRESSED, "on the suppression list"),
        by_customer.id: (MessageState.SUPPRESSED, "on the suppression list"),
    }
    assert [s.message for s in t.send] == [free]


def test_a_message_without_address_is_not_suppressed_by_an_empty_entry() -> None:
    t = run(msg(address=None), suppressed={"c2"})
    assert len(t.send) == 1


def test_too_late_expires_with_the_lateness_in_the_reason() -> None:
    late, just_in_time = msg(late=timedelta(hours=2, seconds=1)), msg(late=timedelta(hours=2))
    t = run(late, just_in_time)
    assert settled(t) == {late.id: (MessageState.EXPIRED, "not sent within 2:00:00")}
    assert [s.message for s in t.send] == [just_in_time]


def test_a_missing_template_fails_the_message() -> None:
    m = msg(template=8)
    assert settled(run(m)) == {m.id: (MessageState.FAILED, "template 8 is not in the catalog")}


def test_suppression_comes_before_expiry_and_expiry_before_a_missing_template() -> None:
    both = msg(address="x@b.test", late=timedelta(days=1), template=8)
    late_no_template = msg(late=timedelta(days=1), template=8)
    t = run(both, late_no_template, suppressed={"x@b.test"})
    assert settled(t) == {
        both.id: (MessageState.SUPPRESSED, "on the suppression list"),
        late_no_template.id: (MessageState.EXPIRED, "not sent within 2:00:00"),
    }
    assert t.send == []


def test_settling_keeps_the_attempt_and_the_time() -> None:
    t = run(msg(template=8), msg(late=timedelta(days=1)), msg(address="x@b.test"), suppressed={"x@b.test"})
    assert [(d.transition.attempts_delta, d.transition.send_at) for d in t.settle] == [(0, None)] * 3


def test_a_render_error_fails_the_message_with_it() -> None:
    m = msg()
    d = tri.render_failed(m, KeyError("first_name"))
    assert (d.message, d.transition.state, d.transition.reason) == (
        m,
        MessageState.FAILED,
        "render: 'first_name'",
    )


def test_held_campaigns_cancel_or_pause_their_messages_and_the_rest_go_on() -> None:
    canceled, paused, free = msg(campaign=1), msg(campaign=2), msg(campaign=3)
    decisions, remaining = tri.hold_back([canceled, paused, free], {1: "canceled", 2: "paused"})
    assert remaining == [free]
    assert {
        d.message.id: (d.transition.state, d.transition.reason, d.transition.attempts_delta)
        for d in decisions
    } == {
        canceled.id: (MessageState.CANCELED, "campaign canceled", 0),
        paused.id: (MessageState.PENDING, "campaign paused", -1),  # the attempt is given back
    }


def test_nothing_held_holds_nothing_back() -> None:
    rows = [msg(), msg()]
    assert tri.hold_back(rows, {}) == ([], rows)


def test_benched_providers_give_every_message_back_unharmed() -> None:
    rows = [msg(), msg()]
    retry_at = NOW + timedelta(seconds=3)
    decisions = tri.give_back(rows, retry_at)
    assert [d.message for d in decisions] == rows
    assert {
        (d.transition.state, d.transition.reason, d.transition.send_at, d.transition.attempts_delta)
        for d in decisions
    } == {(MessageState.PENDING, "all providers benched", retry_at, -1)}
