"""`optibridge customers forget TENANT CUSTOMER` as a user runs it: a real subprocess on the
test's database, printing the rows removed per table; an unknown tenant is a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from retentionkit import Pool, add_tenant, customer_details, ingest_campaign

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optibridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_customers_forget_command(pool: Pool, service_env: dict[str, str], tmp_path: Path) -> None:
    async with pool.connection() as conn:
        await add_tenant(conn)
        await ingest_campaign(conn, 5, customer_details(["C-cli-1", "C-cli-2"], T0), T0)
    proc = run(service_env, "customers", "forget", "acme", "C-cli-1", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["removed"]["messages"] == 1
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT customer_id FROM messages")).fetchall()
    assert [r["customer_id"] for r in rows] == ["C-cli-2"]
    text = run(service_env, "customers", "forget", "acme", "C-cli-1")
    assert text.returncode == 0
    assert "messages: 0" in text.stdout
    missing = run(service_env, "customers", "forget", "nosuch", "C-cli-1")
    assert missing.returncode != 0
    assert "no tenant 'nosuch'" in missing.stderr
