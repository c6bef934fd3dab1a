"""kill -9 of the worker process at random moments while a campaign sends: after restarts, every
message reaches the SMTP sink exactly once (the dispatcher settles a dead worker's claims through
the channel's delivery lookup before sending anything again)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.sinks.lookup import DeliveryLookup, smtp_ids
from optibridge.sinks.smtp_sink import SmtpSink

from servicekit import free_port, start, stop, wait_health

TENANT = "acme"
TOTAL = 3000


async def cli(env: dict[str, str], *args: str) -> None:
    """Run a command without blocking this loop: the emulator it talks to lives in this loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "optibridge", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()


def counts(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT state::text, count(*) FROM messages GROUP BY state").fetchall()
    return dict(rows)


@pytest.mark.slow
async def test_sigkill_five_times_mid_campaign_delivers_each_message_exactly_once(
    service_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    rng = random.Random(20261126)
    async with (
        running_emulator(EmulatorConfig()) as emu,
        SmtpSink() as smtp,
        DeliveryLookup(lambda: smtp_ids(smtp.message_ids)) as lookup,
    ):
        port = free_port()
        env = service_env | {
            "OPTIBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "OPTIBRIDGE_OPTIMOVE_RATE_LIMIT": "0",
            "OPTIBRIDGE_LOG_LEVEL": "INFO",
        }
        await emu.control.create_tenant(TENANT, api_key="k", channels={504: "Email"})
        tenant_file = tmp_path / "tenant.toml"
        tenant_file.write_text(
            f"""id = "{TENANT}"
api_base_url = "{emu.base_url}"
api_key = "k"
[[channels]]
name = "email"
kind = "email"
channel_id = 504
[channels.provider]
type = "smtp"
host = "127.0.0.1"
port = {smtp.port}
tls = "none"
from_address = "n@acme.test"
pool_size = 4
[channels.options]
delivery_lookup_url = "{lookup.url}"
rate_per_s = 250
lanes = 1
chunk = 16
"""
        )
        body = tmp_path / "body.html"
        body.write_text("<p>Hello {{ FirstName }}</p>")
        await cli(env, "tenants", "add", "--file", str(tenant_file))
        await cli(env, "templates", "add", TENANT, "email", "--id", "1", "--name", "T", "--body", str(body),
            "--subject", "Hi")  # fmt: skip
        serve_log = tmp_path / "serve.log"
        serve = start(["serve", "--port", str(port), "--workers", "0"], env, tmp_path, serve_log)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            wait_health(port, 200, serve, serve_log)
            await cli(env, "listeners", "sync")
            worker_log = tmp_path / "worker.log"
            workers.append(start(["worker"], env, tmp_path, worker_log))
            when = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%d %H:%M:%S")
            cid = (
                await emu.control.create_campaign(
                    TENANT, channel_ids=[504], customer_count=TOTAL,
                    scheduled_times=[{"scheduled_time": when}], attribute_values={"FirstName": ["Ann"]},
                )
            )["campaign_id"]  # fmt: skip
            await emu.control.notify(TENANT, event_type_ids=[1], campaign_id=cid)

            deadline = time.monotonic() + 60
            while counts(db_url).get("sent", 0) < 100:
                assert time.monotonic() < deadline, worker_log.read_text()[-3000:]
                await asyncio.sleep(0.1)
            kills = 0
            while kills < 5:
                await asyncio.sleep(rng.uniform(0.3, 2.0))
                os.kill(workers[-1].pid, signal.SIGKILL)
                workers[-1].wait(10)
                kills += 1
                workers.append(start(["worker"], env, tmp_path, worker_log))

            deadline = time.monotonic() + 180
            while counts(db_url) != {"sent": TOTAL}:
                assert time.monotonic() < deadline, (counts(db_url), worker_log.read_text()[-3000:])
                await asyncio.sleep(0.5)
            await asyncio.sleep(1)
        finally:
            for proc in [*workers, serve]:
                if proc.poll() is None:
                    stop(proc)
        per_id = Counter(smtp_ids(smtp.message_ids))
        assert len(per_id) == TOTAL
        assert smtp.count == TOTAL, f"{smtp.count - TOTAL} duplicate(s)"
        log = worker_log.read_text()
        assert "reconciled claims of a dead worker" in log
