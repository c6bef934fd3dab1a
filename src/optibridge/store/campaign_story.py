"""SQL behind the dashboard's campaign story and channel health: send timing per minute, opens and
clicks per hour, what report pushes Optimove accepted, and each channel's recent sending.

Every time window is relative to a `now` passed in (the dashboard's clock; tests move it), never the
database's now(). The per-campaign queries use the campaign indexes (`messages_campaign`,
`message_events_campaign`, `reported_interactions_campaign`, the primary key of reported_metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]
CampaignKey = tuple[str, int, int]  # tenant, Optimove channel id, campaign id

# A chart of sends per minute covers at most this many minutes (a week); a longer campaign shows
# its first week (the dashboard says so).
MAX_MINUTES = 7 * 24 * 60
MAX_HOURS = 31 * 24
MAX_PUSH_ROWS = 200


@dataclass(frozen=True, slots=True)
class SendFacts:
    first_due: datetime | None  # earliest send time of a pending message
    sent_in_window: int  # sent in (now - window, now]
    late_p50_s: float | None  # sent_at - send_at over sent messages
    late_p95_s: float | None
    late_p99_s: float | None
    late_max_s: float | None
    first_sent_at: datetime | None
    last_sent_at: datetime | None
    hold_until: datetime | None


async def send_facts(
    conn: Conn, key: CampaignKey, *, now: datetime, window_s: float, lateness: bool = True
) -> SendFacts:
    """`lateness=False` leaves the percentiles out (None): they sort every sent message, too much
    for the 2 s progress refresh of a large campaign."""
    params = {"t": key[0], "ch": key[1], "c": key[2], "now": now, "since": now - timedelta(seconds=window_s)}
    late = (
        """percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - send_at))
               FILTER (WHERE state = 'sent') AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - send_at))
               FILTER (WHERE state = 'sent') AS p95,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - send_at))
               FILTER (WHERE state = 'sent') AS p99,
           max(extract(epoch FROM sent_at - send_at)) FILTER (WHERE state = 'sent') AS late_max,"""
        if lateness
        else "NULL::float AS p50, NULL::float AS p95, NULL::float AS p99, NULL::float AS late_max,"
    )
    row = await (
        await conn.execute(
            f"""SELECT min(send_at) FILTER (WHERE state = 'pending') AS first_due,
                       count(*) FILTER (WHERE state = 'sent' AND sent_at > %(since)s
                                        AND sent_at <= %(now)s) AS sent_in_window,
                       {late}
                       min(sent_at) FILTER (WHERE state = 'sent') AS first_sent_at,
                       max(sent_at) FILTER (WHERE state = 'sent') AS last_sent_at,
                       (SELECT hold_until FROM campaign_holds
                        WHERE tenant_id = %(t)s AND campaign_id = %(c)s) AS hold_until
                FROM messages WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s""",
            params,
        )
    ).fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns one row

    def opt(v: Any) -> float | None:
        return None if v is None else float(v)

    return SendFacts(
        first_due=row["first_due"],
        sent_in_window=int(row["sent_in_window"]),
        late_p50_s=opt(row["p50"]),
        late_p95_s=opt(row["p95"]),
        late_p99_s=opt(row["p99"]),
        late_max_s=opt(row["late_max"]),
        first_sent_at=row["first_sent_at"],
        last_sent_at=row["last_sent_at"],
        hold_until=row["hold_until"],
    )


@dataclass(frozen=True, slots=True)
class LatenessInputs:
    """What says why a campaign's due messages wait (web.dashboard.campaigns.late_reason)."""

    overdue: int  # pending messages due more than `grace_s` ago (counted up to a cap)
    oldest_due: datetime | None
    lanes_busy: int  # send jobs of this channel running now, all workers
    workers: int  # workers with a heartbeat in the last 30 s
    sent_last_minute: int  # this channel, every campaign
    channel_options: dict[str, Any]


async def lateness_inputs(conn: Conn, key: CampaignKey, *, now: datetime, grace_s: float) -> LatenessInputs:
    params = {"t": key[0], "ch": key[1], "c": key[2], "due": now - timedelta(seconds=grace_s), "now": now}
    row = await (
        await conn.execute(
            """SELECT (SELECT count(*) FROM (SELECT 1 FROM messages WHERE tenant_id = %(t)s
                         AND channel_id = %(ch)s AND campaign_id = %(c)s AND state = 'pending'
                         AND send_at < %(due)s LIMIT 100000) o) AS overdue,
                      (SELECT min(send_at) FROM messages WHERE tenant_id = %(t)s AND channel_id = %(ch)s
                         AND campaign_id = %(c)s AND state = 'pending') AS oldest_due,
                      (SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'
                         AND lock LIKE 'send:' || %(t)s || ':' || %(ch)s || ':%%') AS lanes_busy,
                      (SELECT count(*) FROM procrastinate_workers
                         WHERE last_heartbeat > %(now)s - interval '30 seconds') AS workers,
                      (SELECT count(*) FROM messages WHERE tenant_id = %(t)s AND channel_id = %(ch)s
                         AND state = 'sent' AND sent_at > %(now)s - interval '1 minute') AS sent_last_minute,
                      (SELECT options FROM channels WHERE tenant_id = %(t)s
                         AND optimove_channel_id = %(ch)s) AS options""",
            params,
        )
    ).fetchone()
    assert row is not None
    return LatenessInputs(
        overdue=int(row["overdue"]),
        oldest_due=row["oldest_due"],
        lanes_busy=int(row["lanes_busy"]),
        workers=int(row["workers"]),
        sent_last_minute=int(row["sent_last_minute"]),
        channel_options=dict(row["options"] or {}),
    )


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    minute: datetime
    sent: int  # messages sent in this minute
    due: int  # messages whose send time falls in this minute (canceled ones left out)


async def send_minutes(conn: Conn, key: CampaignKey) -> list[MinuteCounts]:
    """Per minute (UTC, truncated) from the first to the last that has a send or a due time, oldest
    first; only minutes with something in them (the chart fills the gaps with zero)."""
    rows = await (
        await conn.execute(
            """SELECT minute, sum(sent)::bigint AS sent, sum(due)::bigint AS due FROM (
                   SELECT date_trunc('minute', sent_at) AS minute, count(*) AS sent, 0 AS due
                   FROM messages WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s
                     AND state = 'sent' AND sent_at IS NOT NULL GROUP BY 1
                   UNION ALL
                   SELECT date_trunc('minute', send_at), 0, count(*)
                   FROM messages WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s
                     AND state <> 'canceled' GROUP BY 1
               ) x GROUP BY 1 ORDER BY 1 LIMIT %(n)s""",
            {"t": key[0], "ch": key[1], "c": key[2], "n": MAX_MINUTES},
        )
    ).fetchall()
    return [MinuteCounts(r["minute"], int(r["sent"]), int(r["due"])) for r in rows]


@dataclass(frozen=True, slots=True)
class HourCounts:
    hour: datetime
    opened: int  # open events (machine hits left out)
    clicked: int


async def engagement_hours(conn: Conn, key: CampaignKey) -> list[HourCounts]:
    """Opens and clicks per hour (UTC), oldest first; machine hits (suspect) are not counted."""
    rows = await (
        await conn.execute(
            """SELECT date_trunc('hour', occurred_at) AS hour,
                      count(*) FILTER (WHERE kind = 'opened') AS opened,
                      count(*) FILTER (WHERE kind = 'clicked') AS clicked
               FROM message_events
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s
                 AND kind IN ('opened', 'clicked') AND NOT suspect
               GROUP BY 1 ORDER BY 1 LIMIT %s""",
            (*key, MAX_HOURS),
        )
    ).fetchall()
    return [HourCounts(r["hour"], int(r["opened"]), int(r["clicked"])) for r in rows]


@dataclass(frozen=True, slots=True)
class AcceptedPush:
    """What Optimove answered 200 to at one push time: metric values (the latest push's totals
    only: a total replaces the one before) and interactions per EventID."""

    pushed_at: datetime
    metrics: int  # metric values recorded at this time
    interactions: dict[int, int]  # EventID -> customers accepted


async def accepted_pushes(conn: Conn, key: CampaignKey) -> list[AcceptedPush]:
    """Newest first, at most MAX_PUSH_ROWS push times."""
    rows = await (
        await conn.execute(
            """SELECT pushed_at, -1 AS event_id, count(*) AS n FROM reported_metrics
               WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s GROUP BY 1
               UNION ALL
               SELECT pushed_at, event_id, count(*) FROM reported_interactions
               WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s GROUP BY 1, 2
               ORDER BY 1 DESC, 2""",
            {"t": key[0], "ch": key[1], "c": key[2]},
        )
    ).fetchall()
    out: dict[datetime, AcceptedPush] = {}
    for r in rows:
        at = r["pushed_at"]
        push = out.get(at)
        if push is None:
            if len(out) >= MAX_PUSH_ROWS:
                break
            push = out[at] = AcceptedPush(at, 0, {})
        if int(r["event_id"]) < 0:
            out[at] = AcceptedPush(at, int(r["n"]), push.interactions)
        else:
            push.interactions[int(r["event_id"])] = int(r["n"])
    return list(out.values())


@dataclass(frozen=True, slots=True)
class ChannelActivity:
    """One channel's sending around `now`: sent and failed in the window, failure reasons, messages
    claimed now (in flight), and pending messages given back because every provider was benched."""

    tenant_id: str
    channel_id: int
    sent_last_minute: int
    sent: int
    failed: int
    retried: int  # pending again after a transient failure within the window (attempts > 0)
    in_flight: int
    waiting_for_provider: int
    reasons: list[tuple[str, int]]


async def channel_activity(
    conn: Conn, tenant_id: str | None, *, now: datetime, window_s: float, benched_reason: str
) -> list[ChannelActivity]:
    """Per channel of one tenant (None: all), those with any activity in (now - window, now]."""
    since = now - timedelta(seconds=window_s)
    params = {
        "t": tenant_id,
        "now": now,
        "since": since,
        "minute": now - timedelta(seconds=60),
        "br": benched_reason,
    }
    rows = await (
        await conn.execute(
            """SELECT tenant_id, channel_id,
                      count(*) FILTER (WHERE state = 'sent' AND sent_at > %(minute)s) AS sent_last_minute,
                      count(*) FILTER (WHERE state = 'sent') AS sent,
                      count(*) FILTER (WHERE state = 'failed') AS failed,
                      count(*) FILTER (WHERE state = 'pending' AND attempts > 0
                                       AND reason IS DISTINCT FROM %(br)s) AS retried,
                      count(*) FILTER (WHERE state = 'claimed') AS in_flight,
                      count(*) FILTER (WHERE state = 'pending' AND reason = %(br)s) AS waiting
               FROM messages
               WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s)
                 AND ((state = 'sent' AND sent_at > %(since)s AND sent_at <= %(now)s)
                      OR (state IN ('failed', 'pending') AND updated_at > %(since)s
                          AND updated_at <= %(now)s AND reason IS NOT NULL)
                      OR state = 'claimed')
               GROUP BY 1, 2 ORDER BY 1, 2""",
            params,
        )
    ).fetchall()
    reasons = await (
        await conn.execute(
            """SELECT tenant_id, channel_id, coalesce(reason, '(no reason recorded)') AS reason,
                      count(*) AS n
               FROM messages
               WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s) AND state = 'failed'
                 AND updated_at > %(since)s AND updated_at <= %(now)s
               GROUP BY 1, 2, 3 ORDER BY 4 DESC, 3""",
            params,
        )
    ).fetchall()
    by_channel: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for r in reasons:
        top = by_channel.setdefault((r["tenant_id"], int(r["channel_id"])), [])
        if len(top) < 5:
            top.append((r["reason"], int(r["n"])))
    return [
        ChannelActivity(
            tenant_id=r["tenant_id"],
            channel_id=int(r["channel_id"]),
            sent_last_minute=int(r["sent_last_minute"]),
            sent=int(r["sent"]),
            failed=int(r["failed"]),
            retried=int(r["retried"]),
            in_flight=int(r["in_flight"]),
            waiting_for_provider=int(r["waiting"]),
            reasons=by_channel.get((r["tenant_id"], int(r["channel_id"])), []),
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class StageInputs:
    """What the status word needs beyond the campaign row and its counts (see campaigns.stage)."""

    first_due: datetime | None
    hold_until: datetime | None
    schedule_state: str | None  # None: no report schedule yet
    finished_at: datetime | None
    final_at: datetime | None
    next_push_at: datetime | None
    last_push_at: datetime | None
    pushes: int
    failures: int
    last_error: str | None


async def stage_inputs(conn: Conn, keys: list[CampaignKey]) -> dict[CampaignKey, StageInputs]:
    """For each campaign (every key present): its earliest pending send time, Optimove's hold and
    its report schedule."""
    if not keys:
        return {}
    rows = await (
        await conn.execute(
            """SELECT k.tenant_id, k.channel_id, k.campaign_id,
                      (SELECT min(m.send_at) FROM messages m
                       WHERE m.tenant_id = k.tenant_id AND m.channel_id = k.channel_id
                         AND m.campaign_id = k.campaign_id AND m.state = 'pending') AS first_due,
                      h.hold_until, s.state AS schedule_state, s.finished_at, s.final_at,
                      s.next_push_at, s.last_push_at, s.pushes, s.failures, s.last_error
               FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS k(tenant_id, channel_id, campaign_id)
               LEFT JOIN campaign_holds h ON h.tenant_id = k.tenant_id AND h.campaign_id = k.campaign_id
               LEFT JOIN report_schedules s ON s.tenant_id = k.tenant_id AND s.channel_id = k.channel_id
                                           AND s.campaign_id = k.campaign_id""",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
        )
    ).fetchall()
    out: dict[CampaignKey, StageInputs] = {}
    for r in rows:
        out[(r["tenant_id"], int(r["channel_id"]), int(r["campaign_id"]))] = StageInputs(
            first_due=r["first_due"],
            hold_until=r["hold_until"],
            schedule_state=r["schedule_state"],
            finished_at=r["finished_at"],
            final_at=r["final_at"],
            next_push_at=r["next_push_at"],
            last_push_at=r["last_push_at"],
            pushes=int(r["pushes"] or 0),
            failures=int(r["failures"] or 0),
            last_error=r["last_error"],
        )
    return out


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    tenant_id: str
    name: str
    kind: str
    channel_id: int
    options: dict[str, Any]  # the channel's options (lanes, chunk, claim_chunks, rate_per_s, ...)


async def channels_of(conn: Conn, tenant_id: str | None) -> list[ChannelLimits]:
    """Every channel of one tenant (None: all), by tenant and name."""
    rows = await (
        await conn.execute(
            """SELECT tenant_id, name, kind, optimove_channel_id, options FROM channels
               WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s) ORDER BY 1, 2""",
            {"t": tenant_id},
        )
    ).fetchall()
    return [
        ChannelLimits(
            r["tenant_id"], r["name"], r["kind"], int(r["optimove_channel_id"]), dict(r["options"] or {})
        )
        for r in rows
    ]
