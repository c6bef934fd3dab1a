"""The decisions of the promotions flow (docs/flows/promotions.md), as pure functions.

- what we send the tenant's promotion system for a batch, and how its answer maps to a Status per
  customer (a customer it does not name, or names without `true`, is not activated: Status false);
- which of its HTTP answers are worth retrying (the system is down or busy) and which refuse the
  batch for good (every customer of it gets Status false);
- how long to wait before the next attempt, and when to stop asking: at ClearanceRequiredBy minus
  the tenant's margin, after which the customers not yet answered get Status false
  (`report_false`, the default) or are left unreported (`leave`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from optibridge.optimove.promotions import ProcessedCustomer

Statuses = list[tuple[str, bool]]
AnswerKind = Literal["ok", "retry", "refused"]


class PromotionAnswerError(ValueError):
    """The promotion system's 2xx answer is not the documented shape (retried like an outage)."""


def unique_customers(customers: Iterable[ProcessedCustomer]) -> list[ProcessedCustomer]:
    """Each customer once, first occurrence kept (one Status per customer is all Optimove keeps)."""
    seen: set[str] = set()
    out = []
    for customer in customers:
        if customer.customer_id not in seen:
            seen.add(customer.customer_id)
            out.append(customer)
    return out


def webhook_body(
    tenant_id: str, campaign_id: int, clearance_by: datetime, customers: Sequence[ProcessedCustomer]
) -> dict[str, Any]:
    """The JSON we POST to the promotion system for one batch."""
    return {
        "TenantID": tenant_id,
        "CampaignID": campaign_id,
        "ClearanceRequiredBy": clearance_by.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "Customers": [{"CustomerID": c.customer_id, "PromoCodes": list(c.promo_codes)} for c in customers],
    }


def accept_all(customers: Sequence[ProcessedCustomer]) -> Statuses:
    """No promotion system configured: every targeted customer is activated."""
    return [(c.customer_id, True) for c in customers]


def refuse_all(customers: Sequence[ProcessedCustomer]) -> Statuses:
    return [(c.customer_id, False) for c in customers]


def classify_http(status: int) -> AnswerKind:
    """2xx: read the answer. 408, 429 and 5xx: the system is busy or down, try again. Any other
    4xx: it refuses this batch, and asking again would be refused the same way."""
    if 200 <= status < 300:
        return "ok"
    if status in (408, 425, 429) or status >= 500:
        return "retry"
    return "refused"


def statuses_from_answer(customers: Sequence[ProcessedCustomer], answer: Any) -> Statuses:
    """Map `{"Results":[{"CustomerID": "...", "Activated": true|false}]}` (keys in any case) onto
    the batch, in the batch's order. Only a JSON `true` activates; customers the answer leaves out
    get false; customers it names that are not in the batch are ignored."""
    if not isinstance(answer, dict):
        raise PromotionAnswerError("the answer must be a JSON object with a Results array")
    fields = {str(k).lower(): v for k, v in answer.items()}
    results = fields.get("results")
    if not isinstance(results, list):
        raise PromotionAnswerError("the answer has no Results array")
    activated: dict[str, bool] = {}
    for item in results:
        if not isinstance(item, dict):
            raise PromotionAnswerError("every Results item must be an object")
        row = {str(k).lower(): v for k, v in item.items()}
        cid = row.get("customerid")
        if cid is None or isinstance(cid, bool | dict | list):
            raise PromotionAnswerError("a Results item has no CustomerID")
        activated[str(cid)] = row.get("activated") is True
    return [(c.customer_id, activated.get(c.customer_id, False)) for c in customers]


def cutoff(clearance_by: datetime, margin_s: float) -> datetime:
    """When we stop asking the promotion system: ClearanceRequiredBy minus the margin, which leaves
    time to report the rest before Optimove releases the campaign."""
    return clearance_by - timedelta(seconds=max(0.0, margin_s))


def past_cutoff(now: datetime, clearance_by: datetime, margin_s: float) -> bool:
    return now >= cutoff(clearance_by, margin_s)


def retry_delay(
    failures: int, now: datetime, clearance_by: datetime, margin_s: float, *, base_s: float, cap_s: float
) -> float | None:
    """Seconds to wait after the `failures`-th consecutive failure (exponential from `base_s`, at
    most `cap_s`), never past the cutoff; None when the cutoff has come (stop asking)."""
    left = (cutoff(clearance_by, margin_s) - now).total_seconds()
    if left <= 0:
        return None
    delay: float = min(cap_s, base_s * 2.0 ** max(0, failures - 1))
    return min(delay, left)


def deadline_statuses(
    customers: Sequence[ProcessedCustomer], on_deadline: Literal["report_false", "leave"]
) -> Statuses | None:
    """What the customers not answered by the cutoff get: Status false, or nothing (None)."""
    return refuse_all(customers) if on_deadline == "report_false" else None


def count(statuses: Statuses) -> tuple[int, int]:
    """(activated, refused)."""
    yes = sum(1 for _, ok in statuses if ok)
    return yes, len(statuses) - yes
