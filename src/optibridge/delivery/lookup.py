"""The delivery-lookup client: asks a channel's delivery lookup (a provider API, configured as the
channel option `delivery_lookup_url`) which message ids the provider took, for sends whose answer
was lost. The protocol: POST {"message_ids": [...]} -> {"delivered": [...]}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aiohttp

from optibridge.channels import base
from optibridge.core.logs import get_logger
from optibridge.store.messages import ClaimedMessage

log = get_logger(__name__)

BATCH = 500
TIMEOUT_S = 30


async def delivered_ids(url: str, ids: Sequence[str]) -> set[str]:
    """Ask the channel's delivery lookup which of these message ids the provider accepted."""
    found: set[str] = set()
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            async with http.post(url, json={"message_ids": list(batch)}) as resp:
                resp.raise_for_status()
                body = await resp.json()
            found |= {str(i) for i in body.get("delivered", [])}
    return found


def _message_id(row: ClaimedMessage | Mapping[str, object]) -> str:
    return str(row["id"] if isinstance(row, Mapping) else row.id)


async def settle_uncertain(
    lookup_url: str,
    rows: Sequence[ClaimedMessage | Mapping[str, object]],
    results: list[base.SendResult],
) -> list[base.SendResult]:
    """Ask the channel's delivery lookup about sends whose answer was lost: the ones it took are
    sent, the others plain transient failures (to be resent, as `reconcile` does). A lookup that
    fails changes nothing: the channel's `uncertain` policy decides."""
    ids = [_message_id(row) for row, r in zip(rows, results, strict=True) if r.uncertain]
    try:
        accepted = await delivered_ids(lookup_url, ids)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        log.warning("delivery lookup failed; the uncertain policy decides", error=str(exc), count=len(ids))
        return results
    settled = []
    for row, r in zip(rows, results, strict=True):
        if r.uncertain:
            if _message_id(row) in accepted:
                r = base.SendResult(base.Outcome.SENT)
            else:
                reason = f"{r.reason}; not taken, says the delivery lookup"
                r = base.SendResult(base.Outcome.TRANSIENT, reason=reason, retry_after=r.retry_after)
        settled.append(r)
    return settled
