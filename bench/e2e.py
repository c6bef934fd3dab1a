"""End-to-end benchmark: one e-mail campaign from Optimove's notification to the last mail accepted.

    python bench/e2e.py [--size 1000000] [--workers 2]

Starts everything on loopback: a PostgreSQL server over TCP (fsync on; _scalekit.TcpPostgres),
the Optimove emulator with Optimove's default rate limit (50 requests / 10 s per key; pages of
10,000 rows), postfix's smtp-sink, and `optibridge serve --workers 2` (the HTTP app and two worker
child processes). The campaign's customers are all due now; the clock runs from the notification
to the last message row turning `sent`.

Beside it, in the same run, the limit: the least time the rate limit allows for the ingest's
requests (pages / allowed request rate) plus smtp-source's time for the same number of mails at the
same concurrency (16 sessions, 3 KB) into the same smtp-sink. Target: done in under 5 minutes,
within 2x the limit, peak RSS under 200 MB per process. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from _scalekit import Optibridge, TcpPostgres, find_postfix_tool, load_average, rss_mb, stop_all
from channels import CONNECTIONS, free_port, run_smtp_source, wait_for_port
from ingest import control, rate_limit_bound, wait_http
from optibridge.core.secretbox import generate_key
from scale import HTML

PAGE = 10_000
TENANT = "bench"
KEY = "bench-key"
CHANNEL = 504


def tenant_toml(emulator: str, sink_port: int, lanes: int) -> str:
    return f"""id = "{TENANT}"
api_base_url = "{emulator}"
api_key = "{KEY}"
[[channels]]
name = "email"
kind = "email"
channel_id = {CHANNEL}
options = {{ lanes = {lanes} }}
[channels.provider]
type = "smtp"
host = "127.0.0.1"
port = {sink_port}
tls = "none"
from_address = "news@shop.example"
pool_size = {CONNECTIONS}
"""


class Peaks:
    """Peak RSS of each process of interest, sampled by the wait loop."""

    def __init__(self) -> None:
        self.mb: dict[str, float] = {}

    def sample(self, named: dict[str, psutil.Process]) -> None:
        for name, proc in named.items():
            self.mb[name] = max(self.mb.get(name, 0.0), rss_mb(proc))


def processes(serve: subprocess.Popen[bytes], emulator: subprocess.Popen[bytes]) -> dict[str, psutil.Process]:
    named = {"serve": psutil.Process(serve.pid), "emulator": psutil.Process(emulator.pid)}
    try:
        for i, child in enumerate(named["serve"].children()):
            named[f"worker-{i + 1}"] = child
    except psutil.NoSuchProcess:
        pass
    return named


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    size = args.size
    pg = TcpPostgres(work / "pg", free_port(), fsync=True)
    children: list[subprocess.Popen[bytes]] = []
    try:
        url = pg.start()
        sink_port, emu_port, svc_port = free_port(), free_port(), free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        sink = subprocess.Popen([find_postfix_tool("smtp-sink"), *user, f"127.0.0.1:{sink_port}", "1000"])
        children.append(sink)
        wait_for_port(sink_port, sink)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")} | {
            "OPTIBRIDGE_DATABASE_URL": url,
            "OPTIBRIDGE_SECRET_KEY": generate_key(),
            "OPTIBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{svc_port}",
            "OPTIBRIDGE_LOG_LEVEL": "INFO",
            "OPTIBRIDGE_LOG_FORMAT": "json",
            "OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": '["127.0.0.0/8"]',  # emulator and sink on loopback
        }
        cli = Optibridge(env)
        emulator = cli.start(["emulator", "--port", str(emu_port)], work / "emulator.log")
        children.append(emulator)
        emu = f"http://127.0.0.1:{emu_port}"
        await wait_http(f"{emu}/emulator/health")
        cli.run("db", "upgrade")
        (work / "tenant.toml").write_text(tenant_toml(emu, sink_port, args.lanes))
        cli.run("tenants", "add", "--file", str(work / "tenant.toml"))
        serve = cli.start(
            ["serve", "--port", str(svc_port), "--workers", str(args.workers)], work / "serve.log"
        )
        children.append(serve)
        await wait_http(f"http://127.0.0.1:{svc_port}/healthz")
        async with aiohttp.ClientSession() as http:
            info = {"tenant_id": TENANT, "api_keys": [KEY], "channels": {str(CHANNEL): "Email"}}
            await control(http, emu, "POST", "/tenants", info)
            cli.run("listeners", "sync", "--tenant", TENANT)
            (work / "e.html").write_text(HTML)
            cli.run("templates", "add", TENANT, "email", "--id", "1", "--name", "Picks", "--body",
                    str(work / "e.html"), "--subject", "{{ FirstName }}, your picks")  # fmt: skip
            due = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
            campaign = await control(http, emu, "POST", f"/tenants/{TENANT}/campaigns", {
                "channel_ids": [CHANNEL], "customer_count": size,
                "templates": [{"template_id": 1, "weight": 1}],
                "scheduled_times": [{"scheduled_time": due}],
            })  # fmt: skip
            cid = campaign["campaign_id"]
            await asyncio.sleep(11)  # the set-up calls leave the rate limit's 10 s window
            peaks = Peaks()
            named = processes(serve, emulator)
            load_start = load_average()
            started = time.time()
            await control(http, emu, "POST", f"/tenants/{TENANT}/notifications",
                          {"event_type_ids": [1], "campaign_id": cid})  # fmt: skip
        ingested_at = None
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.time() + args.timeout
            while True:
                peaks.sample(named)
                if len(named) < 2 + args.workers:
                    named = processes(serve, emulator)
                row = conn.execute(
                    "SELECT status, error, extract(epoch FROM now()) FROM campaigns WHERE campaign_id = %s",
                    (cid,),
                ).fetchone()
                if row and row[0] == "failed":
                    raise SystemExit(f"ingest failed: {row[1]}; see {work}/serve.log")
                if row and row[0] == "ingested" and ingested_at is None:
                    ingested_at = time.time()  # within the 0.5 s poll
                busy = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM messages WHERE tenant_id = %(t)s AND channel_id = %(ch)s "
                    "AND state = 'pending') OR EXISTS (SELECT 1 FROM messages WHERE tenant_id = %(t)s "
                    "AND channel_id = %(ch)s AND state = 'claimed')",
                    {"t": TENANT, "ch": CHANNEL},
                ).fetchone()
                if ingested_at is not None and busy == (False,):
                    break
                if time.time() > deadline or serve.poll() is not None:
                    raise SystemExit(f"not done in {args.timeout} s (campaign {row}); see {work}/serve.log")
                time.sleep(0.5)
            peaks.sample(named)
            done = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'sent'), count(*), extract(epoch FROM max(sent_at)) "
                "FROM messages WHERE campaign_id = %s",
                (cid,),
            ).fetchone()
        assert done is not None
        if done[0] != size:
            raise SystemExit(f"{done[0]} of {size} sent ({done[1]} rows); see {work}/serve.log")
        elapsed = float(done[2]) - started
        ingest_s = ingested_at - started
        load_end = load_average()
        # The limit, on the same machine in the same run, after ours (our processes idle by then).
        requests = math.ceil(size / PAGE) + (1 if size % PAGE == 0 else 0)
        ingest_bound = rate_limit_bound(requests)
        source_rate = run_smtp_source(find_postfix_tool("smtp-source"), sink_port, size)
        limit = ingest_bound + size / source_rate
        return {
            "elapsed_s": elapsed,
            "ingest_s": ingest_s,
            "requests": requests,
            "ingest_bound_s": ingest_bound,
            "smtp_source_s": size / source_rate,
            "limit_s": limit,
            "peaks": peaks.mb,
            "load": (load_start, load_end),
        }
    finally:
        stop_all(reversed(children))
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes under serve")
    parser.add_argument("--lanes", type=int, default=8, help="the channel's lanes (send jobs at once)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="optibridge-bench-e2e-"))
    try:
        r = asyncio.run(run(args, work))
    finally:
        if args.keep:
            print(f"logs in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    size, elapsed, limit = args.size, r["elapsed_s"], r["limit_s"]
    ratio = elapsed / limit
    rss = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(r["peaks"].items()))
    print(
        f"{size:,} e-mails, notification to last mail accepted: {elapsed:.1f} s ({size / elapsed:,.0f}/s; "
        f"campaign ingested after {r['ingest_s']:.1f} s)\n"
        f"limit: ingest {r['requests']} requests under 50/10 s = {r['ingest_bound_s']:.0f} s + smtp-source "
        f"{r['smtp_source_s']:.1f} s = {limit:.1f} s; ratio {ratio:.2f} (target <= 2, and < 300 s)\n"
        f"peak RSS: {rss}\nload average: start {r['load'][0]}, end {r['load'][1]}",
        flush=True,
    )
    print(json.dumps({
        "bench": "e2e", "size": size, "rate": round(size / elapsed), "unit": "emails/s",
        "limit_rate": round(size / limit), "ratio": round(ratio, 3),
        "peak_rss_mb": round(max(r["peaks"].values()), 1),
        "elapsed_s": round(elapsed, 1), "limit_s": round(limit, 1), "ingest_s": round(r["ingest_s"], 1),
        "rss_mb": {k: round(v, 1) for k, v in r["peaks"].items()}, "workers": args.workers,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
