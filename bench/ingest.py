"""Ingest benchmark: from the "campaign ready" notification to every message row stored.

    python bench/ingest.py [--size N] [--no-limited] [--source api|avro] [--file-rows N]

Starts everything itself on loopback: an embedded PostgreSQL (fsync on, as in production), the
Optimove emulator (a separate process), and `optibridge serve` (a separate process, one worker).
Two runs:

1. emulator and client limits off: the raw rate, rows/s (target >= 50,000 for 1,000,000 customers);
2. Optimove's default 50 requests / 10 s on both sides: the time against the rate-limit bound,
   i.e. the least time the requests could take under that limit (target: within 10 %).

With `--source avro` the campaign comes by event 14 instead (docs/flows/event14.md): the emulator
writes the metadata and `--file-rows`-row deflate Avro files (100,000 by default) to a GCS emulator
in this process, then the clock starts and the webhook is POSTed; one run, no rate-limited run
(no Optimove call is made while ingesting).

Peak RSS is that of the serve process (HTTP app + worker), sampled every 100 ms.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import psycopg

from optibridge.core.secretbox import generate_key
from optibridge.store.embedded import EmbeddedPostgres

PAGE = 10_000
TENANT = "bench"
KEY = "bench-key"
CHANNEL = 504


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "optibridge", *args], env=env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        raise SystemExit(f"optibridge {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


async def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


async def control(http: aiohttp.ClientSession, base: str, method: str, path: str, body: Any = None) -> Any:
    # A new connection per call: between calls the CLI runs for seconds, past the server's keep-alive.
    async with http.request(
        method, f"{base}/emulator{path}", json=body, headers={"Connection": "close"}
    ) as resp:
        text = await resp.text()
        if resp.status >= 400:
            raise SystemExit(f"emulator {path}: {resp.status} {text[:300]}")
        return json.loads(text) if text else None


def rate_limit_bound(requests: int, limit: int = 50, window_s: float = 10.0) -> float:
    """Least seconds `requests` calls take under `limit` per sliding `window_s`, from an empty window."""
    return math.floor((requests - 1) / limit) * window_s if requests > 0 else 0.0


async def one_run(
    size: int, limited: bool, workdir: Path, server_url: str, source: str = "api", file_rows: int = 100_000
) -> dict[str, Any]:
    # A database of its own per run: each run sets up its tenant and secret key from scratch.
    name = "bench_limited" if limited else "bench_unlimited"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    pg_url = server_url.replace("/postgres?", f"/{name}?")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")}
    emu_port, svc_port = free_port(), free_port()
    env |= {
        "OPTIBRIDGE_DATABASE_URL": pg_url,
        "OPTIBRIDGE_SECRET_KEY": generate_key(),
        "OPTIBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{svc_port}",
        "OPTIBRIDGE_OPTIMOVE_RATE_LIMIT": "50" if limited else "0",
        "OPTIBRIDGE_LOG_LEVEL": "INFO",
        "OPTIBRIDGE_LOG_FORMAT": "json",
        "OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": '["127.0.0.0/8", "::1/128"]',  # emulator on loopback
    }
    gcs = None
    if source == "avro":
        from optibridge.emulator.gcs import running_gcs

        gcs = running_gcs()
        env["OPTIBRIDGE_GCS_API_ENDPOINT"] = gcs.__enter__().endpoint
    emu_args = ["emulator", "--port", str(emu_port)] + ([] if limited else ["--no-rate-limit"])
    logs = workdir / ("limited" if limited else "unlimited")
    logs.mkdir(exist_ok=True)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "optibridge", *emu_args],
        env=env, stdout=(logs / "emulator.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    serve = None
    try:
        emu = f"http://127.0.0.1:{emu_port}"
        await wait_http(f"{emu}/emulator/health")
        cli(env, "db", "upgrade")
        cli(
            env, "tenants", "add", TENANT, "--api-url", emu, "--api-key", KEY, "--channel", f"email:{CHANNEL}"
        )
        serve = subprocess.Popen(
            [sys.executable, "-m", "optibridge", "serve", "--port", str(svc_port), "--workers", "1"],
            env=env, stdout=(logs / "serve.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        await wait_http(f"http://127.0.0.1:{svc_port}/healthz")
        async with aiohttp.ClientSession() as http:
            await control(
                http,
                emu,
                "POST",
                "/tenants",
                {"tenant_id": TENANT, "api_keys": [KEY], "channels": {str(CHANNEL): "Email"}},
            )
            cli(env, "listeners", "sync", "--tenant", TENANT)
            body = workdir / "body.html"
            body.write_text("<p>Hello {{ FirstName }}, your code is {{ Code }}</p>")
            for tid in (1, 2, 3):
                cli(env, "templates", "add", TENANT, "email", "--id", str(tid), "--name", f"T{tid}",
                    "--body", str(body), "--subject", "Hi {{ FirstName }}")  # fmt: skip
            if source == "avro":
                assert gcs is not None
                endpoint = env["OPTIBRIDGE_GCS_API_ENDPOINT"]
                await control(http, emu, "PATCH", "/settings", {"gcs_endpoint": endpoint})
                engagement = await control(
                    http, emu, "POST", f"/tenants/{TENANT}/engagements",
                    {
                        "channel_id": CHANNEL, "customer_count": size, "rows_per_file": file_rows,
                        "template_id": 1, "scheduled_time": "2030-01-01 10:00:00",
                        "attributes": ["Email", "FirstName", "Code"], "duplicates": 0,
                    },
                )  # fmt: skip
                cid = engagement["campaign_id"]
                proc = psutil.Process(serve.pid)
                peak = proc.memory_info().rss
                started = time.monotonic()
                async with http.post(engagement["webhook_url"], json=engagement["payload"]) as resp:
                    if resp.status != 202:
                        raise SystemExit(f"webhook: {resp.status} {await resp.text()}")
            campaign = None if source == "avro" else await control(
                http, emu, "POST", f"/tenants/{TENANT}/campaigns",
                {
                    "channel_ids": [CHANNEL],
                    "customer_count": size,
                    "templates": [{"template_id": t, "weight": 1} for t in (1, 2, 3)],
                    "scheduled_times": [
                        {"scheduled_time": "2030-01-01 10:00:00"},
                        {"scheduled_time": "2030-01-01 18:00:00"},
                    ],
                },
            )  # fmt: skip
            if campaign is not None:
                cid = campaign["campaign_id"]
                if limited:
                    await asyncio.sleep(11)  # let the set-up calls leave the 10 s window
                proc = psutil.Process(serve.pid)
                peak = proc.memory_info().rss
                started = time.monotonic()
                await control(
                    http,
                    emu,
                    "POST",
                    f"/tenants/{TENANT}/notifications",
                    {"event_type_ids": [1], "campaign_id": cid},
                )
            with psycopg.connect(pg_url, autocommit=True) as conn:
                while True:
                    peak = max(peak, proc.memory_info().rss)
                    row = conn.execute(
                        "SELECT status, messages, error FROM campaigns WHERE campaign_id = %s", (cid,)
                    ).fetchone()
                    if row and row[0] in ("ingested", "failed"):
                        break
                    if time.monotonic() - started > 1800 or serve.poll() is not None:
                        raise SystemExit(f"ingest did not finish: {row}; see {logs}/serve.log")
                    time.sleep(0.1)
                elapsed = time.monotonic() - started
                if row[0] != "ingested":
                    raise SystemExit(f"ingest failed: {row[2]}")
                stored = conn.execute(
                    "SELECT count(*) FROM messages WHERE campaign_id = %s", (cid,)
                ).fetchone()
                conn.execute("DELETE FROM campaigns WHERE campaign_id = %s", (cid,))
        assert stored is not None
        if stored[0] != size:
            raise SystemExit(f"expected {size} rows, found {stored[0]}")
        for line in (logs / "serve.log").read_text().splitlines():
            if "ingest: done" in line or "engagement: done" in line:
                print("serve:", line, flush=True)
        requests = math.ceil(size / PAGE) + (1 if size % PAGE == 0 else 0)
        return {"elapsed_s": elapsed, "rows": size, "rows_per_s": size / elapsed, "peak_rss_mb": peak / 2**20,
                "requests": requests, "bound_s": rate_limit_bound(requests)}  # fmt: skip
    finally:
        for p in (serve, emulator):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        if gcs is not None:
            gcs.__exit__(None, None, None)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--no-limited", action="store_true", help="skip the rate-limited run")
    parser.add_argument(
        "--source", choices=("api", "avro"), default="api",
        help="api: event 1 + GetCustomerSendDetailsByChannel pages; avro: event 14 + GCS Avro files",
    )  # fmt: skip
    parser.add_argument("--file-rows", type=int, default=100_000, help="rows per Avro file (--source avro)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="optibridge-bench-ingest-"))
    pg = EmbeddedPostgres(workdir / "pg", fsync=True)
    try:
        pg.start()
        url = pg.url("postgres")
        fast = await one_run(args.size, False, workdir, url, args.source, args.file_rows)
        print(
            f"limits off: {fast['rows']:,} rows in {fast['elapsed_s']:.2f} s = "
            f"{fast['rows_per_s']:,.0f} rows/s, peak RSS {fast['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        result: dict[str, Any] = {
            "bench": "ingest",
            "size": args.size,
            "rate": round(fast["rows_per_s"]),
            "unit": "rows/s",
            "peak_rss_mb": round(fast["peak_rss_mb"], 1),
        }
        if args.source == "avro":
            result |= {"source": "avro", "file_rows": args.file_rows}
        if not args.no_limited and args.source == "api":
            slow = await one_run(args.size, True, workdir, url)
            ratio = slow["bound_s"] / slow["elapsed_s"] if slow["elapsed_s"] else 0.0
            print(f"50 req/10 s: {slow['requests']} requests in {slow['elapsed_s']:.2f} s; rate-limit bound "
                  f"{slow['bound_s']:.0f} s; bound/actual {ratio:.3f}", flush=True)  # fmt: skip
            result |= {
                "limited_elapsed_s": round(slow["elapsed_s"], 2),
                "limit_elapsed_s": slow["bound_s"],
                "ratio": round(ratio, 3),
                "limited_peak_rss_mb": round(slow["peak_rss_mb"], 1),
            }
        print(json.dumps(result))
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
