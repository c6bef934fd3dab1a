"""The delivery-lookup client: asks a channel's delivery lookup (a provider API, configured as the
channel option `delivery_lookup_url`) which message ids the provider took, for sends whose answer
was lost. The protocol: POST {"message_ids": [...]} -> {"delivered": [...]}.

The URL is the tenant's, so it goes through the operator's outbound policy like every provider
URL: checked as written, and each resolved address again on connect; redirects are not followed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

from optibridge.channels import base
from optibridge.core.logs import get_logger
from optibridge.core.outbound import DestinationRefusedError, OutboundPolicy
from optibridge.store.messages import ClaimedMessage

log = get_logger(__name__)

BATCH = 500
TIMEOUT_S = 30


MAX_ANSWER_BYTES = 4 << 20


@dataclass(frozen=True)
class LookupTarget:
    """A channel's lookup URL and the outbound policy it is reached under."""

    url: str
    policy: OutboundPolicy = field(default_factory=OutboundPolicy)


async def delivered_ids(lookup: LookupTarget | str, ids: Sequence[str]) -> set[str]:
    """Ask the channel's delivery lookup which of these message ids the provider accepted.

    A bare URL is reached under the default (strict) policy. DestinationRefusedError (an OSError)
    if the policy refuses the destination.
    """
    if isinstance(lookup, str):
        lookup = LookupTarget(lookup)
    reason = lookup.policy.check_url(lookup.url)  # literal IPs never reach the resolver
    if reason is not None:
        raise DestinationRefusedError(f"delivery lookup refused: {reason}")
    found: set[str] = set()
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    connector = aiohttp.TCPConnector(resolver=lookup.policy.resolver())
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector, trust_env=False) as http:
            for start in range(0, len(ids), BATCH):
                found |= await _ask(http, lookup.url, ids[start : start + BATCH])
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, DestinationRefusedError):  # the guard, wrapped by aiohttp
            raise exc.os_error from None
        raise
    return found


async def _ask(http: aiohttp.ClientSession, url: str, batch: Sequence[str]) -> set[str]:
    async with http.post(url, json={"message_ids": list(batch)}, allow_redirects=False) as resp:
        if not 200 <= resp.status < 300:
            raise ValueError(f"delivery lookup answered HTTP {resp.status}")
        raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
    if len(raw) > MAX_ANSWER_BYTES:
        raise ValueError("delivery lookup answer is too large")
    body = json.loads(raw)
    if not isinstance(body, dict) or not isinstance(body.get("delivered", []), list):
        raise ValueError("delivery lookup answer is not {delivered: [...]}")
    return {str(i) for i in body.get("delivered", [])}


def _message_id(row: ClaimedMessage | Mapping[str, object]) -> str:
    return str(row["id"] if isinstance(row, Mapping) else row.id)


async def settle_uncertain(
    lookup_url: LookupTarget | str,
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
        # Our words only (status, refusal, exception type): never the lookup's own answer text.
        error = str(exc) if isinstance(exc, DestinationRefusedError | ValueError) else type(exc).__name__
        log.warning("delivery lookup failed; the uncertain policy decides", error=error, count=len(ids))
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
