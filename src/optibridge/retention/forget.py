"""`optibridge customers forget`: one customer's data out of every table, in one transaction.

What goes: their messages in every campaign and state (a pending one is never sent), the events
and interaction watermarks of those messages, their contact row, their per-campaign cancellations,
their opt-outs not yet told to Optimove and the recipients of their purged messages kept for
unsubscribe links (`unsubscribe_keys`), and the per-message rows of the newer Optimove paths
(the SMS aggregator's report rows, which hold the mobile number; engagement-event progress).
What stays, hashed: their suppressions (an unsubscribe is a legal record, and a later campaign
targeting them must still not reach them), as SHA-256 of the address or id, which
`store.suppressions.matching` still recognises. Reports sent
afterwards no longer count them (totals replace earlier ones); lists Optimove already accepted
cannot be taken back (Optimove has no call for it)."""

from __future__ import annotations

from optibridge.core.errors import NotFoundError
from optibridge.feedback.suppression import normalize_address
from optibridge.runtime import Pool
from optibridge.store import retention as store
from optibridge.store import tenants


async def forget_customer(pool: Pool, tenant_id: str, customer_id: str) -> dict[str, int]:
    """Rows removed per table (suppressions: rewritten to their hashed form). NotFoundError for
    an unknown tenant; an unknown customer removes nothing and is no error (forget is idempotent)."""
    async with pool.connection() as conn, conn.transaction():
        if not await tenants.exists(conn, tenant_id):
            raise NotFoundError(f"no tenant {tenant_id!r}")
        addresses = await store.customer_addresses(conn, tenant_id, customer_id)
        # Suppressions hold addresses normalized; messages and contacts hold them as given.
        forms = sorted({*addresses, *(normalize_address(a) for a in addresses)})
        return await store.forget_customer(conn, tenant_id, customer_id, forms)
