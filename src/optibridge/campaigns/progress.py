"""Campaigns as operators see them: progress from the message rows.

"Sent" is the `sent` state; "done" is any final state (sent, failed, suppressed, canceled,
expired). The rate is what was sent in the last minute; the ETA divides what is still to go
(pending and claimed) by that rate. `compute_progress` is the pure part, tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from optibridge.core.errors import NotFoundError
from optibridge.core.states import ALL_STATES, FINAL_STATES, OPEN_STATES, MessageState
from optibridge.store import campaigns as store
from optibridge.store.campaigns import CampaignCursor, CampaignFilter, CampaignKey, CampaignRow, Conn

__all__ = [
    "CAMPAIGN_STATUSES",
    "RATE_WINDOW_S",
    "Campaign",
    "CampaignDetail",
    "CampaignFilter",
    "CampaignKey",
    "Progress",
    "compute_progress",
    "failure_reasons",
    "get_campaign",
    "list_campaigns",
]

CAMPAIGN_STATUSES = ("awaiting", "ingesting", "ingested", "failed", "canceled")
RATE_WINDOW_S = 60


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]
    total: int
    sent: int
    done: int
    failed: int
    remaining: int
    percent_sent: float
    percent_done: float
    rate_per_s: float
    eta_s: float | None


def compute_progress(
    counts: dict[str, int], sent_in_window: int, window_s: float = RATE_WINDOW_S
) -> Progress:
    full = {state.value: int(counts.get(state, 0)) for state in ALL_STATES}
    total = sum(full.values())
    sent = full[MessageState.SENT]
    done = sum(full[state] for state in FINAL_STATES)
    remaining = sum(full[state] for state in OPEN_STATES)
    rate = sent_in_window / window_s if window_s > 0 else 0.0
    return Progress(
        counts=full,
        total=total,
        sent=sent,
        done=done,
        failed=full[MessageState.FAILED],
        remaining=remaining,
        percent_sent=round(100.0 * sent / total, 1) if total else 0.0,
        percent_done=round(100.0 * done / total, 1) if total else 0.0,
        rate_per_s=round(rate, 2),
        eta_s=round(remaining / rate, 1) if rate > 0 and remaining else (0.0 if not remaining else None),
    )


@dataclass(frozen=True)
class Campaign(CampaignRow):
    """The stored campaign with its progress computed from the message rows."""

    progress: Progress = field(kw_only=True)


@dataclass(frozen=True)
class CampaignDetail:
    campaign: Campaign
    templates: dict[int, Progress] = field(default_factory=dict)
    failures: list[tuple[str, int]] = field(default_factory=list)


def _progress(c: store.StateCounts) -> Progress:
    return compute_progress(c.counts, c.sent_in_window)


def _campaign(row: CampaignRow, progress: Progress) -> Campaign:
    return Campaign(**{f.name: getattr(row, f.name) for f in fields(CampaignRow)}, progress=progress)


async def list_campaigns(
    conn: Conn, flt: CampaignFilter, *, after: CampaignCursor | None, limit: int
) -> list[Campaign]:
    """Newest first; `after` is the sort key of the last campaign of the previous page."""
    rows = await store.list_campaigns(conn, flt, after=after, limit=limit)
    counts = await store.state_counts(conn, [r.key for r in rows], RATE_WINDOW_S)
    return [_campaign(r, _progress(counts[r.key])) for r in rows]


async def campaign_row(
    conn: Conn, tenant_id: str, channel: str, campaign_id: int, *, lock: bool = False
) -> CampaignRow:
    row = await store.get_campaign(conn, tenant_id, channel, campaign_id, lock=lock)
    if row is None:
        raise NotFoundError(f"no campaign {campaign_id} on {tenant_id}/{channel}")
    return row


async def get_campaign(conn: Conn, tenant_id: str, channel: str, campaign_id: int) -> CampaignDetail:
    row = await campaign_row(conn, tenant_id, channel, campaign_id)
    progress = _progress((await store.state_counts(conn, [row.key], RATE_WINDOW_S))[row.key])
    templates = await store.template_state_counts(conn, row.key, RATE_WINDOW_S)
    failures = await store.failures(conn, row.key)
    return CampaignDetail(
        campaign=_campaign(row, progress),
        templates={tid: _progress(c) for tid, c in templates.items()},
        failures=failures,
    )


async def failure_reasons(
    conn: Conn, keys: list[CampaignKey], top: int = 3
) -> dict[CampaignKey, list[tuple[str, int]]]:
    """The most frequent failure reasons of each campaign (for the list page)."""
    return await store.top_failures(conn, keys, top)
