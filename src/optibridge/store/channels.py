"""Channels as the flows look them up (read only; `optibridge.store.tenants` writes them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from optibridge.core.errors import NotFoundError

Conn = psycopg.AsyncConnection[dict[str, Any]]


async def names_by_id(conn: Conn, tenant_id: str) -> dict[int, str]:
    """Optimove channel id -> channel name, for every channel of the tenant, in name order."""
    rows = await (
        await conn.execute(
            "SELECT optimove_channel_id AS id, name FROM channels WHERE tenant_id = %s ORDER BY name",
            (tenant_id,),
        )
    ).fetchall()
    return {int(r["id"]): str(r["name"]) for r in rows}


async def kind_and_id(conn: Conn, tenant_id: str, channel_name: str) -> tuple[str, int]:
    """(kind, Optimove channel id) of a channel named by its name; NotFoundError if none."""
    row = await (
        await conn.execute(
            "SELECT kind, optimove_channel_id FROM channels WHERE tenant_id = %s AND name = %s",
            (tenant_id, channel_name),
        )
    ).fetchone()
    if row is None:
        raise NotFoundError(f"tenant {tenant_id!r} has no channel {channel_name!r}")
    return str(row["kind"]), int(row["optimove_channel_id"])


async def all_names(conn: Conn) -> list[tuple[str, str]]:
    """(tenant, channel name) of every channel, in that order."""
    rows = await (await conn.execute("SELECT tenant_id, name FROM channels ORDER BY 1, 2")).fetchall()
    return [(str(r["tenant_id"]), str(r["name"])) for r in rows]


@dataclass(frozen=True)
class ChannelOptions:
    name: str
    kind: str
    options: dict[str, Any]


async def options_by_id(conn: Conn, tenant_id: str, channel_id: int) -> ChannelOptions | None:
    """A channel named by its Optimove id, with its options; None if the tenant has no such channel."""
    row = await (
        await conn.execute(
            "SELECT name, kind, options FROM channels WHERE tenant_id = %s AND optimove_channel_id = %s",
            (tenant_id, channel_id),
        )
    ).fetchone()
    if row is None:
        return None
    return ChannelOptions(row["name"], row["kind"], row["options"])
