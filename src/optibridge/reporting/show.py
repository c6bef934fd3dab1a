"""The data behind `reports show`: counted now vs last accepted by Optimove, and the schedule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from optibridge.reporting.aggregate import Conn, channel_info, compute_report
from optibridge.reporting.metrics import ALL_METRICS

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
    conn: Conn, campaign_id: int, tenant_id: str | None, *, now: datetime
) -> list[dict[str, Any]]:
    campaigns = await (
        await conn.execute(
            """SELECT c.tenant_id, c.channel_id, c.channel_name, c.status, s.state AS schedule_state,
                      s.finished_at, s.final_at, s.next_push_at, s.last_push_at, s.pushes, s.failures,
                      s.last_error
               FROM campaigns c
               LEFT JOIN report_schedules s USING (tenant_id, channel_id, campaign_id)
               WHERE c.campaign_id = %s AND (%s::text IS NULL OR c.tenant_id = %s)
               ORDER BY c.tenant_id, c.channel_id""",
            (campaign_id, tenant_id, tenant_id),
        )
    ).fetchall()
    out = []
    for c in campaigns:
        tenant, channel = c["tenant_id"], int(c["channel_id"])
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
        reported_rows = await (
            await conn.execute(
                """SELECT template_id, metric_id, value, pushed_at FROM reported_metrics
                   WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
                (tenant, channel, campaign_id),
            )
        ).fetchall()
        reported: dict[int, dict[int, int]] = {}
        for r in reported_rows:
            reported.setdefault(int(r["template_id"]), {})[int(r["metric_id"])] = int(r["value"])
        extra = await (
            await conn.execute(
                """SELECT (SELECT count(*) FROM message_events WHERE tenant_id = %(t)s AND channel_id = %(ch)s
                             AND campaign_id = %(c)s AND suspect) AS suspect_hits,
                          (SELECT count(*) FROM reported_interactions WHERE tenant_id = %(t)s
                             AND channel_id = %(ch)s AND campaign_id = %(c)s) AS interactions_reported""",
                {"t": tenant, "ch": channel, "c": campaign_id},
            )
        ).fetchone()
        templates = sorted(set(report.counts) | set(reported))
        out.append(
            {
                "tenant": tenant,
                "channel_id": channel,
                "channel": c["channel_name"],
                "campaign_status": c["status"],
                "delivered_from": report.delivered_from,
                "schedule": {
                    "state": c["schedule_state"] or "not started (still sending?)",
                    "finished_at": c["finished_at"],
                    "next_push_at": c["next_push_at"],
                    "final_at": c["final_at"],
                    "last_push_at": c["last_push_at"],
                    "pushes": c["pushes"] or 0,
                    "failures": c["failures"] or 0,
                    "last_error": c["last_error"],
                },
                "suspect_hits": int(extra["suspect_hits"]) if extra else 0,
                "interactions_reported": int(extra["interactions_reported"]) if extra else 0,
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
