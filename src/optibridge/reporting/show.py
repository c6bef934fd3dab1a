"""The data behind `reports show`: counted now vs last accepted by Optimove, and the schedule.

A purged campaign (docs/scaling.md "Retention") has no message rows left: its counts come from the
totals the purge kept (`counts_from_totals`), and its block says when its rows were purged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from optibridge.core.feedback_settings import DeliveredFrom
from optibridge.optimove.models import MetricID
from optibridge.reporting.aggregate import Conn, channel_info, compute_report
from optibridge.reporting.metrics import ALL_METRICS, empty_counts
from optibridge.store import report_data
from optibridge.store import reports as report_store
from optibridge.store import retention as retention_store

METRIC_NAMES = {
    0: "sent",
    1: "delivered",
    2: "opened",
    3: "clicked",
    4: "unsubscribed",
    5: "dropped",
    6: "spam",
    9: "bounced",
}


def counts_from_totals(
    states: Mapping[str, int], events: Mapping[str, int], delivered_from: DeliveredFrom
) -> dict[MetricID, int]:
    """One template's metrics from what a purge kept: messages per final state (`states`) and, per
    event kind, messages whose first counted event was of that kind (`events`). Sent, clicked,
    unsubscribed, spam and bounced are what reporting counted; the per-message facts behind the
    others are gone, so: opened counts opens only (reporting also counts a click without an open:
    images blocked), delivered is sent less bounced and failed (or the delivery receipts), dropped
    the unsent final states plus failed receipts (a message both bounced and failed counts in both)."""
    counts = empty_counts()
    sent = int(states.get("sent", 0))
    counts[MetricID.SENT] = sent
    for metric, kind in (
        (MetricID.OPENED, "opened"),
        (MetricID.CLICKED, "clicked"),
        (MetricID.UNSUBSCRIBED, "unsubscribed"),
        (MetricID.SPAM_REPORTS, "complained"),
        (MetricID.BOUNCED, "bounced"),
    ):
        counts[metric] = int(events.get(kind, 0))
    failed = int(events.get("failed", 0))
    if delivered_from == "sent":
        counts[MetricID.DELIVERED] = max(0, sent - counts[MetricID.BOUNCED] - failed)
    else:
        counts[MetricID.DELIVERED] = int(events.get("delivered", 0))
    counts[MetricID.DROPPED] = (
        sum(int(states.get(s, 0)) for s in ("expired", "suppressed", "failed")) + failed
    )
    return counts


async def purged_counts(
    conn: Conn, key: retention_store.CampaignKey, delivered_from: DeliveredFrom
) -> tuple[dict[int, dict[MetricID, int]], int]:
    """Per template, a purged campaign's metrics (`counts_from_totals`), and its machine hits."""
    states = {t.template_id: t.states for t in await retention_store.campaign_totals(conn, key)}
    events: dict[int, dict[str, int]] = {}
    suspect = 0
    for e in await retention_store.event_totals(conn, key):
        events.setdefault(e.template_id, {})[e.kind] = e.messages
        suspect += e.suspect
    templates = sorted(set(states) | set(events))
    return {
        t: counts_from_totals(states.get(t, {}), events.get(t, {}), delivered_from) for t in templates
    }, suspect


async def campaign_overview(
    conn: Conn, campaign_id: int, tenant_id: str | None, *, now: datetime, channel_id: int | None = None
) -> list[dict[str, Any]]:
    """`channel_id`: only that channel of the campaign (the dashboard's campaign page)."""
    campaigns = await report_store.campaign_schedules(conn, campaign_id, tenant_id)
    out = []
    for c in campaigns:
        if channel_id is not None and c.channel_id != channel_id:
            continue
        tenant, channel = c.tenant_id, c.channel_id
        info = await channel_info(conn, tenant, channel)
        delivered_from: DeliveredFrom = info.delivered_from if info else "sent"
        key = retention_store.CampaignKey(tenant, channel, campaign_id)
        purged_at = await retention_store.purged_at(conn, key)
        extra = await report_data.side_counts(conn, tenant, channel, campaign_id)
        suspect_hits = extra.suspect_hits
        if purged_at is None:
            report = await compute_report(
                conn,
                tenant,
                channel,
                campaign_id,
                delivered_from=delivered_from,
                interaction_metrics=(),
                max_new=0,
                now=now,
            )
            counts, delivered_from = report.counts, report.delivered_from
        else:
            counts, suspect_hits = await purged_counts(conn, key, delivered_from)
        reported = await report_data.reported_metrics(conn, tenant, channel, campaign_id)
        templates = sorted(set(counts) | set(reported))
        out.append(
            {
                "tenant": tenant,
                "channel_id": channel,
                "channel": c.channel_name,
                "campaign_status": c.status,
                # Set once its message rows were summarized and deleted: counts are from the totals.
                "purged_at": purged_at,
                "delivered_from": delivered_from,
                "schedule": {
                    "state": c.schedule_state or "not started (still sending?)",
                    "finished_at": c.finished_at,
                    "next_push_at": c.next_push_at,
                    "final_at": c.final_at,
                    "last_push_at": c.last_push_at,
                    "pushes": c.pushes or 0,
                    "failures": c.failures or 0,
                    "last_error": c.last_error,
                },
                "suspect_hits": suspect_hits,
                "interactions_reported": extra.interactions_reported,
                "templates": [
                    {
                        "template_id": t,
                        "counted": {METRIC_NAMES[int(m)]: counts.get(t, {}).get(m, 0) for m in ALL_METRICS},
                        "reported": {
                            METRIC_NAMES[int(m)]: reported[t].get(int(m)) if t in reported else None
                            for m in ALL_METRICS
                        },
                    }
                    for t in templates
                ],
            }
        )
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z")
    return str(value)


def render_overview(overview: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    names = [METRIC_NAMES[int(m)] for m in ALL_METRICS]
    for block in overview:
        s = block["schedule"]
        lines.append(
            f"tenant {block['tenant']}  channel {block['channel']} ({block['channel_id']})  "
            f"campaign status {block['campaign_status']}  delivered from {block['delivered_from']}"
        )
        lines.append(
            f"  schedule: {s['state']}; pushes {s['pushes']}, failures {s['failures']}; "
            f"last {_fmt(s['last_push_at'])}; next {_fmt(s['next_push_at'])}; final {_fmt(s['final_at'])}"
        )
        if s["last_error"]:
            lines.append(f"  last error: {s['last_error']}")
        if block.get("purged_at"):
            lines.append(
                f"  rows purged {_fmt(block['purged_at'])}: counted from the totals kept "
                "(delivered and dropped derived; docs/scaling.md, Retention)"
            )
        lines.append(
            f"  machine hits ignored: {block['suspect_hits']}; "
            f"interactions accepted: {block['interactions_reported']}"
        )
        lines.append("  " + f"{'template':<10} {'':<9}" + "".join(f"{n:>13}" for n in names))
        for t in block["templates"]:
            for label in ("counted", "reported"):
                values = "".join(f"{_fmt(t[label][n]):>13}" for n in names)
                lines.append(f"  {t['template_id']:<10} {label:<9}{values}")
        lines.append("")
    return "\n".join(lines).rstrip()
