"""Benchmark: pull an N-customer campaign through the Optimove client, pages of 10,000.

Starts the emulator in a subprocess (rate limits off, so its CPU does not count against the
client), creates a campaign with a mix of templates and scheduled times, then times
`OptimoveClient.iter_send_details` over the whole campaign with a few attributes requested.

    python bench/ingest_pages.py --size 1000000

The last line printed is one JSON object:
{"bench": "ingest_pages", "size": N, "rate": customers_per_s, "unit": "customers/s",
 "peak_rss_mb": ...}, where peak_rss_mb is this (client) process's peak resident set size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Any

import aiohttp

from optibridge.emulator.control_client import EmulatorControl
from optibridge.optimove import ApiKeyAuth, OptimoveClient, OptimoveClientConfig

TENANT = "bench"
API_KEY = "bench-key"
CHANNEL = 504
CAMPAIGN = 4242


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "optibridge.emulator",
        "--host", "127.0.0.1", "--port", str(port), "--no-rate-limit",
        "--tenant", f"{TENANT}:{API_KEY}",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


async def wait_until_up(control: EmulatorControl, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):  # up to ~30 s
        if process.poll() is not None:
            raise SystemExit(f"the emulator exited with status {process.returncode}")
        try:
            await control.health()
            return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    raise SystemExit("the emulator did not come up")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port = args.port or free_port()
    process = start_emulator(port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with EmulatorControl(base_url) as control:
            await wait_until_up(control, process)
            await control.create_campaign(
                TENANT,
                campaign_id=CAMPAIGN,
                channel_ids=[CHANNEL],
                customer_count=args.size,
                templates=[{"template_id": 11, "weight": 3}, {"template_id": 12, "weight": 1}],
                scheduled_times=[
                    {"scheduled_time": "2030-01-01 09:00:00", "weight": 2},
                    {"scheduled_time": "2030-01-01 18:30:00", "weight": 1},
                ],
            )
        config = OptimoveClientConfig(
            base_url, ApiKeyAuth(API_KEY), rate_limit=None, page_size=args.page_size
        )
        attributes = [a for a in args.attributes.split(",") if a]
        rss_before = peak_rss_mb()
        rows = pages = 0
        templates: dict[int, int] = {}
        async with OptimoveClient(config) as client:
            started = time.perf_counter()
            async for page in client.iter_send_details(CAMPAIGN, CHANNEL, attributes):
                pages += 1
                rows += len(page.rows)
                # Touch every row the way ingest would, so parsing is not optimised away.
                for row in page.rows:
                    templates[row.template_id] = templates.get(row.template_id, 0) + 1
            elapsed = time.perf_counter() - started
        if rows != args.size:
            raise SystemExit(f"pulled {rows} customers, expected {args.size}")
        rate = rows / elapsed if elapsed > 0 else 0.0
        print(f"size            {args.size:,} customers, {pages} pages of {args.page_size:,}")
        print(f"attributes      {', '.join(attributes) or '(none)'}")
        print(f"templates       {dict(sorted(templates.items()))}")
        print(f"elapsed         {elapsed:.2f} s")
        print(f"rate            {rate:,.0f} customers/s")
        print(f"rss             {rss_before:.1f} MB before pulling, {peak_rss_mb():.1f} MB peak")
        print(f"cpus            {os.cpu_count()}")
        return {
            "bench": "ingest_pages",
            "size": args.size,
            "rate": round(rate),
            "unit": "customers/s",
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="customers in the campaign")
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--attributes", default="Email,FirstName,MobilePhone")
    parser.add_argument("--port", type=int, default=0, help="emulator port (default: free)")
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
