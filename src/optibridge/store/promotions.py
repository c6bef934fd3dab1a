"""Promotions for event-5 campaigns: the tenant's settings (its promotion-system token encrypted)
and each campaign's run, whose `next_skip` says up to where every customer's status is reported."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from optibridge.core.promotion_settings import OnDeadline, PromotionSettingsIn
from optibridge.core.secretbox import SecretBox

Conn = psycopg.AsyncConnection[dict[str, Any]]
RunStatus = Literal["running", "done", "deadline", "failed"]


@dataclass(frozen=True)
class PromotionSettings:
    """A tenant's promotion settings, without the token (see `bearer_token`)."""

    enabled: bool = False
    webhook_url: str | None = None
    has_token: bool = False
    batch_size: int = 10_000
    deadline_margin_s: int = 120
    on_deadline: OnDeadline = "report_false"


async def get_settings(conn: Conn, tenant_id: str) -> PromotionSettings:
    """The tenant's settings; the defaults (disabled) if it never set any."""
    cur = await conn.execute(
        """SELECT enabled, webhook_url, secrets IS NOT NULL AS has_token, batch_size,
                  deadline_margin_s, on_deadline
           FROM tenant_promotions WHERE tenant_id = %s""",
        (tenant_id,),
    )
    row = await cur.fetchone()
    return PromotionSettings() if row is None else PromotionSettings(**row)


async def is_enabled(conn: Conn, tenant_id: str) -> bool:
    cur = await conn.execute("SELECT enabled FROM tenant_promotions WHERE tenant_id = %s", (tenant_id,))
    row = await cur.fetchone()
    return bool(row and row["enabled"])


async def bearer_token(conn: Conn, box: SecretBox, tenant_id: str) -> str | None:
    cur = await conn.execute("SELECT secrets FROM tenant_promotions WHERE tenant_id = %s", (tenant_id,))
    row = await cur.fetchone()
    if row is None or row["secrets"] is None:
        return None
    token = box.decrypt_json(bytes(row["secrets"])).get("bearer_token")
    return token if isinstance(token, str) and token else None


async def put_settings(
    conn: Conn,
    box: SecretBox,
    tenant_id: str,
    settings: PromotionSettings,
    *,
    token: str | None,
    keep_token: bool,
) -> None:
    """Store the settings. `keep_token`: keep the stored token (a client never sees it, so it cannot
    send it back); otherwise `token` replaces it (None removes it)."""
    secret = box.encrypt_json({"bearer_token": token}) if token else None
    await conn.execute(
        """INSERT INTO tenant_promotions AS p
               (tenant_id, enabled, webhook_url, secrets, batch_size, deadline_margin_s, on_deadline)
           VALUES (%(t)s, %(enabled)s, %(url)s, %(secret)s, %(batch)s, %(margin)s, %(on_deadline)s)
           ON CONFLICT (tenant_id) DO UPDATE SET
               enabled = EXCLUDED.enabled, webhook_url = EXCLUDED.webhook_url,
               secrets = CASE WHEN %(keep)s THEN p.secrets ELSE EXCLUDED.secrets END,
               batch_size = EXCLUDED.batch_size, deadline_margin_s = EXCLUDED.deadline_margin_s,
               on_deadline = EXCLUDED.on_deadline, updated_at = now()""",
        {
            "t": tenant_id,
            "enabled": settings.enabled,
            "url": settings.webhook_url,
            "secret": None if keep_token else secret,
            "keep": keep_token,
            "batch": settings.batch_size,
            "margin": settings.deadline_margin_s,
            "on_deadline": settings.on_deadline,
        },
    )


def from_config(config: PromotionSettingsIn) -> PromotionSettings:
    return PromotionSettings(
        enabled=config.enabled,
        webhook_url=config.webhook_url,
        batch_size=config.batch_size,
        deadline_margin_s=config.deadline_margin_s,
        on_deadline=config.on_deadline,
    )


async def put_config(
    conn: Conn, box: SecretBox, tenant_id: str, config: PromotionSettingsIn, *, file: bool = False
) -> None:
    """Store settings as written. From the API or CLI a token absent keeps the stored one; a config
    file (`file`) states everything, so there a token absent means none."""
    token, keep = _token_change(config, file)
    await put_settings(conn, box, tenant_id, from_config(config), token=token, keep_token=keep)


def _token_change(config: PromotionSettingsIn, file: bool) -> tuple[str | None, bool]:
    token, keep = config.token_change()
    return (None, False) if file and keep else (token, keep)


async def matches(conn: Conn, box: SecretBox, tenant_id: str, config: PromotionSettingsIn | None) -> bool:
    """Whether what is stored is what a config file states (None: nothing stored)."""
    cur = await conn.execute("SELECT 1 FROM tenant_promotions WHERE tenant_id = %s", (tenant_id,))
    if config is None:
        return await cur.fetchone() is None
    want = from_config(config)
    have = await get_settings(conn, tenant_id)
    token, _ = _token_change(config, True)
    same_token = await bearer_token(conn, box, tenant_id) == token
    return same_token and have == PromotionSettings(**{**want.__dict__, "has_token": have.has_token})


async def remove(conn: Conn, tenant_id: str) -> None:
    await conn.execute("DELETE FROM tenant_promotions WHERE tenant_id = %s", (tenant_id,))


# --- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionRun:
    tenant_id: str
    campaign_id: int
    clearance_by: datetime
    status: RunStatus
    next_skip: int
    batches: int
    activated: int
    refused: int
    past_deadline: int
    promo_failures: int
    bad_rows: int
    last_error: str | None


_RUN_COLUMNS = """tenant_id, campaign_id, clearance_by, status, next_skip, batches, activated, refused,
                  past_deadline, promo_failures, bad_rows, last_error"""


async def start_run(conn: Conn, tenant_id: str, campaign_id: int, clearance_by: datetime) -> bool:
    """Record a run for the campaign; False if one exists (its deadline moves only later)."""
    cur = await conn.execute(
        """INSERT INTO promotion_runs (tenant_id, campaign_id, clearance_by) VALUES (%s, %s, %s)
           ON CONFLICT (tenant_id, campaign_id) DO UPDATE
               SET clearance_by = GREATEST(promotion_runs.clearance_by, EXCLUDED.clearance_by)
           RETURNING (xmax = 0) AS inserted""",
        (tenant_id, campaign_id, clearance_by),
    )
    row = await cur.fetchone()
    return bool(row and row["inserted"])


async def get_run(conn: Conn, tenant_id: str, campaign_id: int) -> PromotionRun | None:
    cur = await conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM promotion_runs WHERE tenant_id = %s AND campaign_id = %s",
        (tenant_id, campaign_id),
    )
    row = await cur.fetchone()
    return None if row is None else PromotionRun(**row)


async def list_runs(conn: Conn, tenant_id: str, limit: int = 100) -> list[PromotionRun]:
    cur = await conn.execute(
        f"""SELECT {_RUN_COLUMNS} FROM promotion_runs WHERE tenant_id = %s
            ORDER BY created_at DESC, campaign_id DESC LIMIT %s""",
        (tenant_id, limit),
    )
    return [PromotionRun(**row) for row in await cur.fetchall()]


async def batch_done(
    conn: Conn,
    tenant_id: str,
    campaign_id: int,
    *,
    from_skip: int,
    count: int,
    activated: int,
    refused: int,
    past_deadline: int = 0,
    bad_rows: int = 0,
) -> bool:
    """Move the run past a reported batch. Only from `from_skip`: a second job that reported the same
    batch (a re-queued stalled job) does not count it twice. False if the run was elsewhere."""
    cur = await conn.execute(
        """UPDATE promotion_runs SET next_skip = next_skip + %s, batches = batches + 1,
                  activated = activated + %s, refused = refused + %s,
                  past_deadline = past_deadline + %s, bad_rows = bad_rows + %s, updated_at = now()
           WHERE tenant_id = %s AND campaign_id = %s AND next_skip = %s AND status = 'running'""",
        (count, activated, refused, past_deadline, bad_rows, tenant_id, campaign_id, from_skip),
    )
    return cur.rowcount == 1


async def note_failure(conn: Conn, tenant_id: str, campaign_id: int, error: str) -> None:
    await conn.execute(
        """UPDATE promotion_runs SET promo_failures = promo_failures + 1, last_error = %s,
                  updated_at = now()
           WHERE tenant_id = %s AND campaign_id = %s""",
        (error[:500], tenant_id, campaign_id),
    )


async def finish(
    conn: Conn,
    tenant_id: str,
    campaign_id: int,
    status: RunStatus,
    *,
    error: str | None = None,
) -> None:
    await conn.execute(
        """UPDATE promotion_runs SET status = %s,
                  last_error = COALESCE(%s, last_error), finished_at = now(), updated_at = now()
           WHERE tenant_id = %s AND campaign_id = %s AND status = 'running'""",
        (status, error[:500] if error else None, tenant_id, campaign_id),
    )
