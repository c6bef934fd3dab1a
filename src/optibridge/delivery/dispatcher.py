"""Flow 5: send every due message of a channel, at its time, exactly once.

A send job owns one (tenant, channel) lane for a time budget. It claims a slice of due messages
(`FOR UPDATE SKIP LOCKED`, so any number of workers on any number of machines share the work),
renders them, sends them in chunks through the channel's healthiest provider, and writes each
chunk's outcome before sending the next. The provider is called only for claimed rows.

After a crash, messages stay `claimed` by a dead worker. `reconcile` settles them before anything
is sent again: where the channel has a delivery lookup (a provider API that says whether it took a
message id) it asks; otherwise the channel's `uncertain` policy decides (`resend`: at least once;
`assume_sent`: at most once). docs/delivery.md explains the choice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg

from optibridge.catalog.models import TemplateSpec, compile_spec
from optibridge.channels import base
from optibridge.core import telemetry as metrics
from optibridge.core.config import ChannelOptions
from optibridge.core.logs import get_logger
from optibridge.delivery.providers import ChannelProviders, TokenBucket, build_channel_providers
from optibridge.delivery.transitions import RetryPolicy, Transition, after_send, too_late
from optibridge.feedback import suppression
from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.links import (
    instrument_html,
    list_unsubscribe_headers,
    tracking_urls,
    twilio_status_callback_url,
)
from optibridge.feedback.send_results import record_send_results
from optibridge.rendering import CompiledTemplate, RenderError, TemplateCache
from optibridge.store import tenants as tenant_store

log = get_logger(__name__)
Conn = psycopg.AsyncConnection[dict[str, Any]]

SLICE = 500
LEASE = timedelta(minutes=10)
DEAD_WORKER_AFTER = timedelta(seconds=20)


@dataclass
class Channel:
    """What a process needs to send on one channel; built once, kept while the process runs."""

    tenant_id: str
    channel_id: int
    name: str
    kind: str
    options: ChannelOptions
    providers: ChannelProviders
    bucket: TokenBucket | None
    retry: RetryPolicy

    @property
    def chunk(self) -> int:
        return self.options.chunk

    @property
    def uncertain(self) -> str:
        return self.options.uncertain

    @property
    def lookup_url(self) -> str | None:
        return self.options.delivery_lookup_url

    @property
    def track(self) -> bool:
        return self.options.tracking


@dataclass
class SliceStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    suppressed: int = 0
    expired: int = 0

    def add(self, state: str) -> None:
        if state == "sent":
            self.sent += 1
        elif state == "pending":
            self.retried += 1
        elif state == "failed":
            self.failed += 1
        elif state == "suppressed":
            self.suppressed += 1
        elif state == "expired":
            self.expired += 1


@dataclass
class Dispatcher:
    """One per process: channels, compiled templates and tracking keys, shared by its send jobs."""

    pool: Any
    box: Any
    settings: Any
    keys: TrackingKeys
    templates: TemplateCache = field(default_factory=TemplateCache)
    channels: dict[tuple[str, int], Channel] = field(default_factory=dict)
    app_ids: dict[tuple[str, str, int], str | None] = field(default_factory=dict)  # push templates

    async def channel(self, tenant_id: str, channel_id: int) -> Channel:
        key = (tenant_id, channel_id)
        found = self.channels.get(key)
        if found is not None:
            return found
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT name, kind, options FROM channels "
                    "WHERE tenant_id = %s AND optimove_channel_id = %s",
                    (tenant_id, channel_id),
                )
            ).fetchone()
            if row is None:
                raise LookupError(f"tenant {tenant_id!r} has no channel {channel_id}")
            provider_settings = await tenant_store.channel_provider_settings(
                conn, self.box, tenant_id, channel_id
            )
        options = ChannelOptions.model_validate(row["options"])
        providers = await build_channel_providers(row["kind"], provider_settings, self.settings.public_url)
        channel = Channel(
            tenant_id=tenant_id,
            channel_id=channel_id,
            name=row["name"],
            kind=row["kind"],
            options=options,
            providers=providers,
            bucket=TokenBucket(options.rate_per_s) if options.rate_per_s else None,
            retry=RetryPolicy(
                max_attempts=options.max_attempts,
                max_lateness=timedelta(hours=options.max_lateness_hours),
                assume_sent_when_uncertain=options.uncertain == "assume_sent",
            ),
        )
        self.channels[key] = channel
        return channel

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.providers.close()
        self.channels.clear()

    # -- templates --------------------------------------------------------------------------

    async def compiled(
        self, conn: Conn, ch: Channel, template_ids: set[int]
    ) -> dict[int, CompiledTemplate | str]:
        """Compiled templates by id, or the reason one cannot be used."""
        rows = await (
            await conn.execute(
                "SELECT template_id, version, name, subject, body, text_body, app_id, defaults "
                "FROM templates WHERE tenant_id = %s AND channel_name = %s AND template_id = ANY(%s) "
                "AND deleted_at IS NULL",
                (ch.tenant_id, ch.name, list(template_ids)),
            )
        ).fetchall()
        out: dict[int, CompiledTemplate | str] = {
            t: f"template {t} is not in the catalog" for t in template_ids
        }
        for r in rows:
            key = (ch.tenant_id, ch.name, r["template_id"], r["version"])
            compiled = self.templates.get(key)
            if compiled is None:
                spec = TemplateSpec(
                    template_id=r["template_id"], name=r["name"], subject=r["subject"], body=r["body"],
                    text_body=r["text_body"], app_id=r["app_id"], defaults=r["defaults"],
                )  # fmt: skip
                compiled = compile_spec(ch.kind, spec)
                self.templates.put(key, compiled)
            out[r["template_id"]] = compiled
            self.app_ids[(ch.tenant_id, ch.name, r["template_id"])] = r["app_id"]
        return out


# -- claiming ---------------------------------------------------------------------------------

CLAIM_SQL = """
WITH due AS (
    SELECT m.id FROM messages m
    JOIN campaigns c ON c.tenant_id = m.tenant_id AND c.channel_id = m.channel_id
                    AND c.campaign_id = m.campaign_id
    WHERE m.tenant_id = %(t)s AND m.channel_id = %(ch)s AND m.state = 'pending' AND m.send_at <= %(now)s
      AND NOT c.paused AND NOT c.cancel_pending AND c.status <> 'canceled'
      AND NOT EXISTS (SELECT 1 FROM campaign_holds h WHERE h.tenant_id = m.tenant_id
                      AND h.campaign_id = m.campaign_id AND h.hold_until > %(now)s)
    ORDER BY m.send_at
    LIMIT %(n)s
    FOR UPDATE OF m SKIP LOCKED
)
UPDATE messages m SET state = 'claimed', claimed_by = %(me)s, claimed_until = %(now)s + %(lease)s,
                      attempts = attempts + 1, updated_at = %(now)s
FROM due WHERE m.id = due.id
RETURNING m.id, m.campaign_id, m.customer_id, m.template_id, m.send_at, m.address, m.attrs, m.attempts
"""


async def claim(conn: Conn, ch: Channel, me: str, now: datetime, limit: int = SLICE) -> list[dict[str, Any]]:
    rows = await (
        await conn.execute(
            CLAIM_SQL,
            {"t": ch.tenant_id, "ch": ch.channel_id, "now": now, "n": limit, "me": me, "lease": LEASE},
        )
    ).fetchall()
    return list(rows)


UPDATE_SQL = """
UPDATE messages m SET state = u.state::message_state, reason = u.reason,
       send_at = COALESCE(u.send_at, m.send_at), attempts = m.attempts + u.delta,
       provider = COALESCE(u.provider, m.provider),
       provider_message_id = COALESCE(u.pmid, m.provider_message_id),
       sent_at = CASE WHEN u.state = 'sent' THEN %(now)s ELSE m.sent_at END,
       claimed_by = NULL, claimed_until = NULL, updated_at = %(now)s
FROM unnest(%(ids)s::uuid[], %(states)s::text[], %(reasons)s::text[], %(send_at)s::timestamptz[],
            %(deltas)s::int[], %(providers)s::text[], %(pmids)s::text[])
     AS u(id, state, reason, send_at, delta, provider, pmid)
WHERE m.id = u.id AND m.state = 'claimed' AND m.claimed_by = %(me)s
"""


@dataclass
class Outcomes:
    ids: list[Any] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    send_at: list[datetime | None] = field(default_factory=list)
    deltas: list[int] = field(default_factory=list)
    providers: list[str | None] = field(default_factory=list)
    pmids: list[str | None] = field(default_factory=list)
    results: list[tuple[Any, base.SendResult]] = field(default_factory=list)

    def put(self, message_id: Any, t: Transition, provider: str | None = None) -> None:
        self.ids.append(message_id)
        self.states.append(t.state)
        self.reasons.append(t.reason[:1000] if t.reason else None)
        self.send_at.append(t.send_at)
        self.deltas.append(t.attempts_delta)
        self.providers.append(provider)
        self.pmids.append(t.provider_message_id)

    def __len__(self) -> int:
        return len(self.ids)


async def write(conn: Conn, out: Outcomes, me: str, now: datetime) -> int:
    if not out:
        return 0
    async with conn.transaction():
        cur = await conn.execute(
            UPDATE_SQL,
            {
                "ids": out.ids, "states": out.states, "reasons": out.reasons, "send_at": out.send_at,
                "deltas": out.deltas, "providers": out.providers, "pmids": out.pmids, "me": me, "now": now,
            },
        )  # fmt: skip
        if out.results:
            await record_send_results(conn, out.results, now=now)
    return cur.rowcount


# -- one slice --------------------------------------------------------------------------------


def _variables(row: dict[str, Any], ch: Channel, unsubscribe_url: str | None) -> dict[str, Any]:
    attrs = row["attrs"]
    data = dict(attrs) if isinstance(attrs, dict) else json.loads(attrs or "{}")
    data.update(
        customer_id=row["customer_id"],
        campaign_id=row["campaign_id"],
        template_id=row["template_id"],
        channel_id=ch.channel_id,
        tenant_id=ch.tenant_id,
        message_id=str(row["id"]),
        unsubscribe_url=unsubscribe_url or "",
    )
    return data


def build_outbound(
    d: Dispatcher, ch: Channel, row: dict[str, Any], template: CompiledTemplate, now: datetime
) -> base.OutboundMessage:
    """Render one message (RenderError on a missing attribute without a default)."""
    mid = str(row["id"])
    public = d.settings.public_url
    tracking = tracking_urls(public, mid, d.keys, issued_at=now) if public and ch.kind == "email" else None
    parts = template.render(_variables(row, ch, tracking.unsubscribe_url if tracking else None))
    common: dict[str, Any] = {
        "message_id": mid,
        "tenant_id": ch.tenant_id,
        "campaign_id": row["campaign_id"],
        "customer_id": row["customer_id"],
        "template_id": row["template_id"],
        "to": row["address"] or "",
    }
    if ch.kind == "email":
        html = parts.get("html", "")
        headers: dict[str, str] = {}
        if tracking is not None:
            if ch.track:
                html = instrument_html(html, tracking)
            headers = list_unsubscribe_headers(tracking.unsubscribe_url)
        return base.OutboundMessage(
            body=html, subject=parts.get("subject"), text_body=parts.get("text"), headers=headers, **common
        )
    if ch.kind == "push":
        app_id = d.app_ids.get((ch.tenant_id, ch.name, row["template_id"]))
        return base.OutboundMessage(
            body=parts.get("text", ""), subject=parts.get("title"), app_id=app_id, **common
        )
    data = {}
    if ch.kind == "sms" and public:
        data["status_callback"] = twilio_status_callback_url(public, mid, d.keys, issued_at=now)
    return base.OutboundMessage(body=parts.get("text", ""), data=data, **common)


async def send_slice(
    d: Dispatcher, conn: Conn, ch: Channel, rows: list[dict[str, Any]], me: str, clock: Any = None
) -> SliceStats:
    now_fn = clock or (lambda: datetime.now(UTC))
    stats = SliceStats(claimed=len(rows))
    now = now_fn()
    first = Outcomes()
    ready: list[tuple[dict[str, Any], base.OutboundMessage]] = []

    blocked = await suppression.suppressed(
        conn, ch.tenant_id, ch.name,
        addresses=[r["address"] for r in rows if r["address"]],
        customer_ids=[r["customer_id"] for r in rows],
    )  # fmt: skip
    templates = await d.compiled(conn, ch, {r["template_id"] for r in rows})
    for row in rows:
        if row["address"] in blocked or row["customer_id"] in blocked:
            first.put(row["id"], Transition("suppressed", reason="on the suppression list"))
        elif too_late(row["send_at"], now, ch.retry):
            first.put(row["id"], Transition("expired", reason=f"not sent within {ch.retry.max_lateness}"))
        elif isinstance(template := templates[row["template_id"]], str):
            first.put(row["id"], Transition("failed", reason=template))
        else:
            try:
                ready.append((row, build_outbound(d, ch, row, template, now)))
            except RenderError as exc:
                first.put(row["id"], Transition("failed", reason=f"render: {exc}"))
    for state in first.states:
        stats.add(state)
    await write(conn, first, me, now)

    for start in range(0, len(ready), ch.chunk):
        chunk = ready[start : start + ch.chunk]
        # A pause or cancel takes effect before the next chunk, not only at the next claim.
        held = await _held_campaigns(conn, ch, {row["campaign_id"] for row, _ in chunk})
        if held:
            out = Outcomes()
            for row, _ in chunk:
                why = held.get(row["campaign_id"])
                if why == "canceled":
                    out.put(row["id"], Transition("canceled", reason="campaign canceled"))
                elif why == "paused":
                    out.put(row["id"], Transition("pending", reason="campaign paused", attempts_delta=-1))
            await write(conn, out, me, now_fn())
            chunk = [(row, m) for row, m in chunk if row["campaign_id"] not in held]
            if not chunk:
                continue
        picked = ch.providers.pick()
        out = Outcomes()
        if picked is None:
            # Every provider is benched: give the messages back, unharmed, for when one returns.
            wait = timedelta(seconds=max(1.0, ch.providers.seconds_until_usable()))
            for row, _ in ready[start:]:
                out.put(
                    row["id"],
                    Transition(
                        "pending", reason="all providers benched", send_at=now_fn() + wait, attempts_delta=-1
                    ),
                )
                stats.retried += 1
            await write(conn, out, me, now_fn())
            break
        index, provider = picked
        if ch.bucket is not None:
            await ch.bucket.take(len(chunk))
        started = time.monotonic()
        results = await provider.send_many([m for _, m in chunk])
        elapsed = time.monotonic() - started
        if ch.lookup_url and any(r.uncertain for r in results):
            results = await settle_uncertain(ch.lookup_url, [row for row, _ in chunk], results)
        now = now_fn()
        sent = 0
        for (row, _), result in zip(chunk, results, strict=True):
            t = after_send(result, attempts=row["attempts"], send_at=row["send_at"], now=now, policy=ch.retry)
            out.put(row["id"], t, provider.name)
            if result.bounce or result.unregistered:
                out.results.append((row["id"], result))
            if result.outcome is base.Outcome.SENT:
                sent += 1
                metrics.observe_send_delay(ch.kind, row["send_at"], now)
            else:
                metrics.count_provider_error(provider.name, result.outcome.value)
            stats.add(t.state)
        metrics.count_sent(provider.name, sent)
        await write(conn, out, me, now)
        if ch.providers.report(index, results):
            log.warning(
                "provider benched: throttled or failing",
                provider=provider.name,
                tenant=ch.tenant_id,
                reasons=sorted({r.reason or "" for r in results if r.outcome is not base.Outcome.SENT})[:3],
                seconds=round(elapsed, 2),
            )
    return stats


async def settle_uncertain(
    lookup_url: str, rows: list[dict[str, Any]], results: list[base.SendResult]
) -> list[base.SendResult]:
    """Ask the channel's delivery lookup about sends whose answer was lost: the ones it took are
    sent, the others plain transient failures (to be resent, as `reconcile` does). A lookup that
    fails changes nothing: the channel's `uncertain` policy decides."""
    ids = [str(row["id"]) for row, r in zip(rows, results, strict=True) if r.uncertain]
    try:
        accepted = await delivered_ids(lookup_url, ids)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        log.warning("delivery lookup failed; the uncertain policy decides", error=str(exc), count=len(ids))
        return results
    settled = []
    for row, r in zip(rows, results, strict=True):
        if r.uncertain:
            if str(row["id"]) in accepted:
                r = base.SendResult(base.Outcome.SENT)
            else:
                reason = f"{r.reason}; not taken, says the delivery lookup"
                r = base.SendResult(base.Outcome.TRANSIENT, reason=reason, retry_after=r.retry_after)
        settled.append(r)
    return settled


async def _held_campaigns(conn: Conn, ch: Channel, campaign_ids: set[int]) -> dict[int, str]:
    """Campaigns among these that must not send now: 'paused' (or on hold) or 'canceled'."""
    rows = await (
        await conn.execute(
            """SELECT campaign_id, CASE WHEN status = 'canceled' THEN 'canceled' ELSE 'paused' END AS why
               FROM campaigns
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = ANY(%s)
                 AND (paused OR cancel_pending OR status = 'canceled')""",
            (ch.tenant_id, ch.channel_id, list(campaign_ids)),
        )
    ).fetchall()
    return {int(r["campaign_id"]): str(r["why"]) for r in rows}


# -- reconciliation ---------------------------------------------------------------------------

STALE_SQL = """
SELECT m.id, m.claimed_by, m.send_at, m.attempts FROM messages m
WHERE m.tenant_id = %(t)s AND m.channel_id = %(ch)s AND m.state = 'claimed'
  AND (m.claimed_until < %(now)s OR NOT EXISTS (
        SELECT 1 FROM procrastinate_workers w
        WHERE w.id::text = m.claimed_by AND w.last_heartbeat > %(now)s - %(dead)s))
LIMIT 10000
FOR UPDATE OF m SKIP LOCKED
"""


async def delivered_ids(url: str, ids: Sequence[str]) -> set[str]:
    """Ask the channel's delivery lookup which of these message ids the provider accepted."""
    found: set[str] = set()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            async with http.post(url, json={"message_ids": list(batch)}) as resp:
                resp.raise_for_status()
                body = await resp.json()
            found |= {str(i) for i in body.get("delivered", [])}
    return found


async def reconcile(conn: Conn, ch: Channel, now: datetime) -> dict[str, int]:
    """Settle messages claimed by dead workers (or past their lease) before anything else is sent."""
    counts = {"sent": 0, "pending": 0}
    async with conn.transaction():
        rows = await (
            await conn.execute(
                STALE_SQL, {"t": ch.tenant_id, "ch": ch.channel_id, "now": now, "dead": DEAD_WORKER_AFTER}
            )
        ).fetchall()
        if not rows:
            return counts
        ids = [str(r["id"]) for r in rows]
        if ch.lookup_url:
            accepted = await delivered_ids(ch.lookup_url, ids)
            how = "provider lookup"
        elif ch.uncertain == "assume_sent":
            accepted = set(ids)
            how = "assumed sent (uncertain policy)"
        else:
            accepted = set()
            how = "re-sent (uncertain policy)"
        states = ["sent" if mid in accepted else "pending" for mid in ids]
        for state in states:
            counts[state] += 1
        await conn.execute(
            """UPDATE messages m SET state = u.state::message_state, claimed_by = NULL, claimed_until = NULL,
                      sent_at = CASE WHEN u.state = 'sent' THEN %(now)s ELSE m.sent_at END,
                      reason = %(why)s, updated_at = %(now)s
               FROM unnest(%(ids)s::uuid[], %(states)s::text[]) AS u(id, state)
               WHERE m.id = u.id AND m.state = 'claimed'""",
            {"ids": ids, "states": states, "now": now, "why": f"reconciled after a crash: {how}"},
        )
    log.warning(
        "reconciled claims of a dead worker", tenant=ch.tenant_id, channel=ch.channel_id, how=how, **counts
    )
    return counts
