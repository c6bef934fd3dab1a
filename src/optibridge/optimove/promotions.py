"""The promotion calls of §10: GetProcessedCampaignCustomers (who an event-5 campaign targets) and
UpdateCustomerPromotionStatus (whose promotion was activated).

Both go through the client's `_send`, so they share its authentication, rate limit and retries of
transient failures (429, 5xx, timeouts) like every other Optimove call. They live here, not in
client.py, because only the promotions flow uses them.

GetProcessedCampaignCustomers' parameters and fields are UNCONFIRMED (optimove-api.md §7.5): we send
`CampaignID` with `$top`/`$skip` like the other customer pulls and read `CustomerID` plus an optional
`PromoCode` (comma-separated, as in GetCustomerExecutionDetailsByCampaign §7.3), keys in any case.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from optibridge.optimove.batching import chunked
from optibridge.optimove.client import OptimoveClient
from optibridge.optimove.paging import iterate_pages
from optibridge.optimove.responses import lower_keys
from optibridge.optimove.timefmt import format_optimove_time

PROCESSED_CALL: Final = "GetProcessedCampaignCustomers"
STATUS_CALL: Final = "UpdateCustomerPromotionStatus"
# "one flow sends batches of up to 10K customers" (§10): the most PromosUpdated items per call.
MAX_PROMOTION_STATUSES: Final = 10_000


@dataclass(frozen=True, slots=True)
class ProcessedCustomer:
    customer_id: str
    promo_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessedPage:
    skip: int
    customers: tuple[ProcessedCustomer, ...]
    # Rows without a usable CustomerID: skipped (nothing can be reported for them), counted.
    bad_rows: int = 0

    def __len__(self) -> int:
        """Rows as served, bad ones included: `$skip` counts them."""
        return len(self.customers) + self.bad_rows


def _codes(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(code for code in (str(c).strip() for c in items) if code)


def parse_processed_customers(data: Any) -> tuple[list[ProcessedCustomer], int]:
    """Rows of GetProcessedCampaignCustomers and how many had no usable CustomerID (one bad row
    never fails the page); an empty body or `null` is an empty page. Not an array: an error."""
    if data is None:
        return [], 0
    if not isinstance(data, list):
        raise ValueError(f"{PROCESSED_CALL}: expected a JSON array, got {type(data).__name__}")
    out = []
    bad = 0
    for item in data:
        fields = lower_keys(item) if isinstance(item, dict) else {}
        raw_id = fields.get("customerid")
        if raw_id is None or isinstance(raw_id, bool | dict | list) or str(raw_id).strip() == "":
            bad += 1
            continue
        codes = fields.get("promocodes", fields.get("promocode"))
        out.append(ProcessedCustomer(str(raw_id), _codes(codes)))
    return out, bad


async def get_processed_customers_page(
    client: OptimoveClient, campaign_id: int, *, skip: int, top: int
) -> ProcessedPage:
    params = {"CampaignID": str(campaign_id), "$top": str(top), "$skip": str(skip)}
    payload = await client._get(PROCESSED_CALL, f"customers/{PROCESSED_CALL}", params)
    rows, bad = client._decode(PROCESSED_CALL, payload, parse_processed_customers)
    return ProcessedPage(skip, tuple(rows), bad)


def iter_processed_customers(
    client: OptimoveClient, campaign_id: int, *, page_size: int, start_skip: int = 0
) -> AsyncIterator[ProcessedPage]:
    """The campaign's targeted customers, page by page from `start_skip` (a resumed run).

    No prefetch: a page is one batch for the promotion system, which may take long; the next page
    is asked for when the batch before it is reported.
    """

    async def fetch(skip: int, top: int) -> ProcessedPage:
        return await get_processed_customers_page(client, campaign_id, skip=skip, top=top)

    return iterate_pages(
        fetch,
        call=PROCESSED_CALL,
        page_size=page_size,
        start_skip=start_skip,
        max_pages=client.config.max_pages,
        stop_on_short_page=client.config.stop_on_short_page,
        prefetch=False,
    )


def status_bodies(
    campaign_id: int,
    statuses: Sequence[tuple[str, bool]],
    timestamp: datetime | None,
    per_call: int = MAX_PROMOTION_STATUSES,
) -> list[dict[str, Any]]:
    """The UpdateCustomerPromotionStatus bodies for these statuses, at most `per_call` each."""
    stamp = None if timestamp is None else format_optimove_time(timestamp)
    return [
        {
            "TimeStamp": stamp,
            "CampaignID": int(campaign_id),
            "PromosUpdated": [{"CustomerId": cid, "Status": bool(ok)} for cid, ok in chunk],
        }
        for chunk in chunked(statuses, per_call)
    ]


async def update_customer_promotion_status(
    client: OptimoveClient,
    campaign_id: int,
    statuses: Iterable[tuple[str, bool]],
    *,
    timestamp: datetime | None = None,
    per_call: int = MAX_PROMOTION_STATUSES,
) -> int:
    """Report (customer, activated) pairs; returns how many calls it took."""
    bodies = status_bodies(campaign_id, list(statuses), timestamp, per_call)
    for body in bodies:
        await client._post(STATUS_CALL, f"integrations/{STATUS_CALL}", body)
    return len(bodies)
