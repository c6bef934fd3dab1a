"""The data behind `reports show`: counted now vs last accepted by Optimove, and the schedule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from optibridge.reporting.aggregate import Conn, channel_info, compute_report
from optibridge.reporting.metrics import ALL_METRICS
from optibridge.store import report_data
from optibridge.store import reports as report_store

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
        report = await compute_report(
            conn,
            tenant,
            channel,
            campaign_id,
            delivered_from=info.delivered_from if info else "sent",
            interaction_metrics=(),
            max_new=0,
            now=now,
        )
        reported = await report_data.reported_metrics(conn, tenant, channel, campaign_id)
        extra = await report_data.side_counts(conn, tenant, channel, campaign_id)
        templates = sorted(set(report.counts) | set(reported))
        out.append(
            {
                "tenant": tenant,
                "channel_id": channel,
                "channel": c.channel_name,
                "campaign_status": c.status,
                "delivered_from": report.delivered_from,
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
                "suspect_hits": extra.suspect_hits,
                "interactions_reported": extra.interactions_reported,
                "templates": [
                    {
                        "template_id": t,
                        "counted": {
                            METRIC_NAMES[int(m)]: report.counts.get(t, {}).get(m, 0) for m in ALL_METRICS
                        },
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
