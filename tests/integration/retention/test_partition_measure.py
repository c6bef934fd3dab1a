"""The measurement behind not partitioning `messages` (docs/scaling.md "Retention"): removing one
campaign of ROWS messages with the purge's batched DELETE (plus VACUUM) against DROP of a
per-campaign partition, and whether the plain table reuses the freed space (so its size levels
off without partitions). Prints the figures; asserts the reuse. Run:

    pytest tests/integration/retention/test_partition_measure.py -q -n 0 -s -m slow
"""

from __future__ import annotations

import time

import pytest
from retentionkit import Conn, Pool

CAMPAIGNS = 5
ROWS = 40_000
BATCH = 5000

FILL = """
INSERT INTO {table} (id, tenant_id, channel_id, campaign_id, customer_id, template_id, scheduled_at,
                     send_at, address, attrs, state, sent_at, provider, provider_message_id)
SELECT md5(%(c)s || ':' || g)::uuid, 'acme', 504, %(c)s, 'C' || g, 1 + g %% 2, now(), now(),
       'c' || g || '@mail.example.test',
       jsonb_build_object('FirstName', 'First' || g, 'LastName', 'Last' || g, 'City', 'Springfield',
                          'LoyaltyTier', 'gold', 'Basket', 'sku-' || g %% 97 || ';sku-' || g %% 89),
       'sent', now(), 'smtp', '<' || md5(%(c)s || ':' || g) || '@mta.example.test>'
FROM generate_series(1, %(n)s) g
"""
PICK = """SELECT id FROM plain WHERE tenant_id = 'acme' AND channel_id = 504 AND campaign_id = 0
          LIMIT %s FOR UPDATE SKIP LOCKED"""


async def size(conn: Conn, table: str) -> int:
    sql = "SELECT pg_total_relation_size(%s::regclass) AS b"
    row = await (await conn.execute(sql, (table,))).fetchone()
    assert row is not None
    return int(row["b"])


@pytest.mark.slow
async def test_batched_delete_reuses_space_and_costs_what_it_costs(pool: Pool) -> None:
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE plain (LIKE messages INCLUDING ALL)")
        await conn.execute(
            "CREATE TABLE parted (LIKE messages INCLUDING DEFAULTS) PARTITION BY LIST (campaign_id)"
        )
        await conn.execute("ALTER TABLE parted ADD PRIMARY KEY (campaign_id, id)")
        await conn.execute("CREATE INDEX ON parted (tenant_id, channel_id, campaign_id, state)")
        await conn.execute("CREATE INDEX ON parted (tenant_id, channel_id, send_at) WHERE state = 'pending'")
        for c in range(CAMPAIGNS):
            await conn.execute(f"CREATE TABLE parted_{c} PARTITION OF parted FOR VALUES IN ({c})")
            for table in ("plain", "parted"):
                await conn.execute(FILL.format(table=table), {"c": c, "n": ROWS})
        await conn.execute("VACUUM ANALYZE plain")
        await conn.execute("VACUUM ANALYZE parted")
        full = await size(conn, "plain")

        t = time.perf_counter()
        deleted = 0
        while True:
            async with conn.transaction():
                rows = await (await conn.execute(PICK, (BATCH,))).fetchall()
                ids = [r["id"] for r in rows]
                if not ids:
                    break
                cur = await conn.execute("DELETE FROM plain WHERE id = ANY(%s::uuid[])", (ids,))
                deleted += cur.rowcount
        delete_s = time.perf_counter() - t
        t = time.perf_counter()
        await conn.execute("VACUUM plain")
        vacuum_s = time.perf_counter() - t
        after_vacuum = await size(conn, "plain")
        await conn.execute(FILL.format(table="plain"), {"c": CAMPAIGNS, "n": ROWS})
        await conn.execute("VACUUM plain")
        refilled = await size(conn, "plain")

        t = time.perf_counter()
        await conn.execute("ALTER TABLE parted DETACH PARTITION parted_0")
        await conn.execute("DROP TABLE parted_0")
        drop_s = time.perf_counter() - t

    assert deleted == ROWS
    print()
    print(
        f"{CAMPAIGNS} campaigns x {ROWS} messages; table with indexes {full / 1e6:.1f} MB "
        f"({full / (CAMPAIGNS * ROWS):.0f} B/message)"
    )
    print(
        f"batched DELETE of one campaign: {delete_s:.2f} s ({delete_s / ROWS * 1e6:.1f} us/message), "
        f"VACUUM {vacuum_s:.2f} s"
    )
    print(
        f"size after VACUUM {after_vacuum / 1e6:.1f} MB (files keep the space), "
        f"after the next campaign's {ROWS} rows {refilled / 1e6:.1f} MB"
    )
    print(f"DETACH + DROP of a partition: {drop_s * 1000:.0f} ms")
    # The freed space is reused: one campaign out, one in, the table is (nearly) where it was.
    assert refilled <= full * 1.10
