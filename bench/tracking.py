"""Benchmark: open and click hits per second on the tracking endpoints, with p99 latency.

    python bench/tracking.py [--seconds 20] [--connections 32] [--rate 0] [--flush-ms 50]

Starts everything itself: an embedded PostgreSQL in a temporary folder (fsync off), the schema,
a tenant with an e-mail campaign of `--size` sent messages, and the tracking routes on uvicorn
(one process, this one). A load generator in another process (aiohttp, `--connections` keep-alive
connections) sends GETs, 77% opens and 23% clicks, to random messages of the campaign (so hits
repeat, as real opens do): closed loop by default (each connection sends its next request when the
previous one is answered: the sustained maximum), or at a fixed `--rate` (open loop: latency is
measured from when each request was due, so a slow server is not hidden by requests waiting to
be sent). Prints a summary, then one JSON line:

    {"bench": "tracking", "size": N, "rate": ..., "unit": "hits/s", "p99_ms": ..., "peak_rss_mb": ...}

`--flush-ms 0` writes each hit in its own transaction (no buffer), for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import multiprocessing as mp
import os
import random
import resource
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import uvicorn
from fastapi import FastAPI

from optibridge.bootstrap import open_runtime
from optibridge.core.config import Settings
from optibridge.core.feedback_settings import FeedbackSettings
from optibridge.core.logs import configure as configure_logging
from optibridge.core.secretbox import generate_key
from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.links import tracking_urls
from optibridge.store.embedded import EmbeddedPostgres
from optibridge.testing.feedback import add_channel, add_tenant, seed_campaign
from optibridge.web import tracking

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126 Safari/537"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# -- load generator (runs in its own process) ----------------------------------------------


async def _load(urls: list[str], rate: float, seconds: float, connections: int) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    worst: dict[int, float] = {}
    rng = random.Random(7)
    counter = iter(range(10**9))
    async with aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": UA}, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        # Warm-up: open the connections before the clock starts.
        async def warm(url: str) -> None:
            async with session.get(url, allow_redirects=False) as resp:
                await resp.read()

        await asyncio.gather(*(warm(urls[i % len(urls)]) for i in range(connections)))
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                due = start + i / rate if rate > 0 else time.perf_counter()
                if due >= deadline:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                url = urls[rng.randrange(len(urls))]
                try:
                    async with session.get(url, allow_redirects=False) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    continue
                latency = time.perf_counter() - due
                latencies.append(latency)
                second = int(due - start)
                worst[second] = max(worst.get(second, 0.0), latency)

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "count": len(latencies),
        "elapsed": elapsed,
        "errors": errors,
        "statuses": statuses,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
        "worst_per_second_ms": [round(worst[k] * 1000, 1) for k in sorted(worst)],
    }


def _load_process(urls: list[str], rate: float, seconds: float, connections: int, out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.send(asyncio.run(_load(urls, rate, seconds, connections)))


# -- server side ---------------------------------------------------------------------------


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fsync=False)
        url = pg.start()
        try:
            key = generate_key()
            settings = Settings(database_url=url, secret_key=key, data_dir=Path(tmp) / "data")
            async with open_runtime(settings, upgrade=True, pool_size=args.pool) as rt:
                async with rt.pool.connection() as conn:
                    await add_tenant(conn, rt.box, "bench", "http://127.0.0.1:9", "k")
                    await add_channel(conn, "bench", "email", "email", 504)
                    sent_at = datetime.now(UTC) - timedelta(hours=1)
                    seeded = await seed_campaign(
                        conn,
                        tenant_id="bench",
                        channel_name="email",
                        channel_kind="email",
                        channel_id=504,
                        campaign_id=1,
                        customers=args.size,
                        sent_at=sent_at,
                        templates=(1, 2),
                    )
                keys = TrackingKeys.from_secret_keys([key])
                sock = _free_socket()
                base = f"http://127.0.0.1:{sock.getsockname()[1]}"
                urls = []
                for m in seeded:
                    t = tracking_urls(base, m.id, keys, issued_at=sent_at)
                    urls.append(t.open_url)
                    if len(urls) % 10 < 3:
                        urls.append(t.click_url(f"https://shop.example/p/{m.customer_id}?utm=mail"))
                app = FastAPI()
                app.include_router(
                    tracking.router(rt, settings=FeedbackSettings(flush_interval_ms=args.flush_ms), keys=keys)
                )
                server = uvicorn.Server(
                    uvicorn.Config(
                        app,
                        log_level=logging.WARNING,
                        access_log=False,
                        lifespan="on",
                        loop="uvloop",
                        http="httptools",
                        backlog=4096,
                    )
                )
                task = asyncio.create_task(server.serve(sockets=[sock]))
                for _ in range(500):
                    if server.started:
                        break
                    await asyncio.sleep(0.01)
                ctx = mp.get_context("spawn")
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=_load_process, args=(urls, args.rate, args.seconds, args.connections, child)
                )
                proc.start()
                me = psutil.Process()
                cpu0 = me.cpu_times()
                profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
                if profiler is not None:
                    profiler.enable()
                while not parent.poll():
                    await asyncio.sleep(0.1)
                cpu1 = me.cpu_times()
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(os.environ["BENCH_PROFILE"])
                load_cpu = psutil.Process(proc.pid).cpu_times()
                result: dict[str, Any] = parent.recv()
                proc.join(10)
                result["server_cpu_s"] = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
                result["load_cpu_s"] = load_cpu.user + load_cpu.system
                server.should_exit = True
                await task
                sock.close()
                async with rt.pool.connection() as conn:
                    row = await (await conn.execute("SELECT count(*) AS n FROM message_events")).fetchone()
                result["events_stored"] = row["n"] if row else 0
        finally:
            pg.stop()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=50_000, help="messages in the campaign")
    parser.add_argument(
        "--rate", type=float, default=0, help="target hits/s (0: closed loop, as fast as it goes)"
    )
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--flush-ms", type=int, default=50, help="tracking buffer interval (0: write per hit)"
    )
    parser.add_argument("--pool", type=int, default=10, help="database connections")
    args = parser.parse_args()
    import uvloop  # the loop uvicorn itself would pick

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(args))
    rate = result["count"] / result["elapsed"]
    print(
        f"hits: {result['count']} in {result['elapsed']:.1f} s = {rate:.0f}/s (target {args.rate:.0f}); "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms; "
        f"errors {result['errors']}, statuses {result['statuses']}; events stored {result['events_stored']}; "
        f"flush {args.flush_ms} ms; CPU s: server {result['server_cpu_s']:.1f}, "
        f"load generator {result['load_cpu_s']:.1f}; worst per second (ms) {result['worst_per_second_ms']}",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "tracking",
                "size": args.size,
                "rate": round(rate, 1),
                "unit": "hits/s",
                "p99_ms": round(result["p99_ms"], 2),
                "peak_rss_mb": round(result["peak_rss_mb"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
