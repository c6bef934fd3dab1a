"""The promotions flow's pure decisions: batching, answer mapping, retry and deadline rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from optibridge.intake import promotions_plan as plan
from optibridge.optimove.promotions import (
    ProcessedCustomer,
    ProcessedPage,
    parse_processed_customers,
    status_bodies,
)

C = ProcessedCustomer
DEADLINE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def batch(*ids: str) -> list[ProcessedCustomer]:
    return [C(i) for i in ids]


def test_processed_customers_parse_any_key_case_and_split_promo_codes() -> None:
    rows, bad = parse_processed_customers(
        [
            {"CustomerID": "C1", "PromoCode": "A7Bonus, A9Bonus"},
            {"customerId": 42, "ActionID": 1},
            {"CUSTOMERID": "C3", "PromoCodes": ["X", ""]},
        ]
    )
    assert (rows, bad) == ([C("C1", ("A7Bonus", "A9Bonus")), C("42"), C("C3", ("X",))], 0)
    assert parse_processed_customers(None) == ([], 0)


def test_rows_without_a_customer_are_counted_and_skipped_not_the_page() -> None:
    data = [{"PromoCode": "A"}, {"CustomerID": ""}, {"CustomerID": True}, "C1", {"CustomerID": "C5"}]
    rows, bad = parse_processed_customers(data)
    assert (rows, bad) == ([C("C5")], 4)
    page = ProcessedPage(skip=10, customers=tuple(rows), bad_rows=bad)
    assert len(page) == 5  # $skip moves past the bad rows too


def test_an_answer_that_is_not_an_array_is_an_error() -> None:
    with pytest.raises(ValueError, match="GetProcessedCampaignCustomers"):
        parse_processed_customers({"CustomerID": "C1"})


def test_status_bodies_split_at_the_per_call_limit_in_order() -> None:
    statuses = [(f"C{i}", i % 2 == 0) for i in range(25)]
    bodies = status_bodies(7, statuses, DEADLINE, per_call=10)
    assert [len(b["PromosUpdated"]) for b in bodies] == [10, 10, 5]
    assert bodies[0]["TimeStamp"] == "2026-11-30 12:00:00"
    assert bodies[0]["CampaignID"] == 7
    assert bodies[2]["PromosUpdated"][-1] == {"CustomerId": "C24", "Status": True}
    assert [p["CustomerId"] for b in bodies for p in b["PromosUpdated"]] == [c for c, _ in statuses]
    assert status_bodies(7, [], None) == []
    assert status_bodies(7, [("C1", False)], None)[0]["TimeStamp"] is None


def test_a_customer_listed_twice_in_a_page_is_kept_once() -> None:
    assert plan.unique_customers([C("a"), C("b"), C("a", ("P",))]) == [C("a"), C("b")]


def test_the_answer_maps_onto_the_batch_and_only_true_activates() -> None:
    answer = {
        "results": [
            {"CustomerID": "a", "Activated": True},
            {"customerid": "b", "activated": False},
            {"CustomerID": "c", "Activated": "true"},  # not a JSON true: not activated
            {"CustomerID": "zz", "Activated": True},  # not in the batch: ignored
        ]
    }
    got = plan.statuses_from_answer(batch("a", "b", "c", "d"), answer)
    assert got == [("a", True), ("b", False), ("c", False), ("d", False)]  # d: left out -> false
    assert plan.count(got) == (1, 3)


@pytest.mark.parametrize(
    "answer", [[], {"Results": {}}, {"Results": ["a"]}, {"Results": [{"Activated": True}]}, "ok", None]
)
def test_an_answer_of_another_shape_is_an_error(answer: object) -> None:
    with pytest.raises(plan.PromotionAnswerError):
        plan.statuses_from_answer(batch("a"), answer)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, "ok"), (204, "ok"), (408, "retry"), (429, "retry"), (500, "retry"), (503, "retry"),
     (400, "refused"), (401, "refused"), (404, "refused"), (422, "refused"), (301, "refused")],
)  # fmt: skip
def test_which_answers_are_retried(status: int, kind: str) -> None:
    assert plan.classify_http(status) == kind


def test_retry_delays_grow_and_never_pass_the_cutoff() -> None:
    now = DEADLINE - timedelta(seconds=1000)
    delays = [plan.retry_delay(n, now, DEADLINE, 0, base_s=1, cap_s=60) for n in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    close = DEADLINE - timedelta(seconds=130)
    assert plan.retry_delay(5, close, DEADLINE, 120, base_s=1, cap_s=60) == 10  # only 10 s left
    assert plan.retry_delay(1, DEADLINE - timedelta(seconds=120), DEADLINE, 120, base_s=1, cap_s=60) is None
    assert plan.retry_delay(1, DEADLINE + timedelta(seconds=1), DEADLINE, 0, base_s=1, cap_s=60) is None


def test_the_cutoff_is_clearance_minus_the_margin() -> None:
    assert plan.cutoff(DEADLINE, 120) == DEADLINE - timedelta(minutes=2)
    assert plan.cutoff(DEADLINE, -5) == DEADLINE
    assert not plan.past_cutoff(DEADLINE - timedelta(seconds=121), DEADLINE, 120)
    assert plan.past_cutoff(DEADLINE - timedelta(seconds=120), DEADLINE, 120)


def test_at_the_deadline_the_rest_gets_false_or_nothing() -> None:
    rest = batch("a", "b")
    assert plan.deadline_statuses(rest, "report_false") == [("a", False), ("b", False)]
    assert plan.deadline_statuses(rest, "leave") is None


def test_accept_all_and_the_webhook_body() -> None:
    customers = [C("a", ("P1", "P2")), C("b")]
    assert plan.accept_all(customers) == [("a", True), ("b", True)]
    body = plan.webhook_body("acme", 9, DEADLINE, customers)
    assert body == {
        "TenantID": "acme",
        "CampaignID": 9,
        "ClearanceRequiredBy": "2026-11-30T12:00:00Z",
        "Customers": [
            {"CustomerID": "a", "PromoCodes": ["P1", "P2"]},
            {"CustomerID": "b", "PromoCodes": []},
        ],
    }
