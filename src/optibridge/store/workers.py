"""What other workers see of this one: its heartbeat in `procrastinate_workers`."""

from __future__ import annotations

from optibridge.store.messages import Conn


async def heartbeat_age_s(conn: Conn, worker_id: str) -> float | None:
    """Seconds since the worker's last heartbeat, by the database's clock (the clock the other
    workers' dead-claim test compares with), or None when the worker has no row (pruned as dead)."""
    row = await (
        await conn.execute(
            "SELECT extract(epoch FROM now() - last_heartbeat)::float8 AS age "
            "FROM procrastinate_workers WHERE id::text = %s",
            (worker_id,),
        )
    ).fetchone()
    return None if row is None or row["age"] is None else max(0.0, float(row["age"]))
