"""One worker process of the shared rate-limit test: N calls through a client whose limiter is
shared through PostgreSQL; prints one JSON line with its first start, last end and retries."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from optibridge.optimove import ApiKeyAuth, OptimoveClient, OptimoveClientConfig, RateLimit, RetryPolicy
from optibridge.optimove.shared_limit import SharedLimiters
from optibridge.store.database import Database


async def main(db_url: str, base_url: str, calls: int, requests: int, window_s: float) -> None:
    pool = Database(url=db_url).pool(max_size=4)
    await pool.open(wait=True)
    config = OptimoveClientConfig(
        base_url,
        ApiKeyAuth("shared-key"),
        rate_limit=RateLimit(requests, window_s),
        retry=RetryPolicy(max_attempts=1),  # a 429 must fail the call, not hide behind a retry
    )
    first = last = 0.0
    try:
        async with OptimoveClient(config, limiters=SharedLimiters(pool)) as client:
            gate = asyncio.Semaphore(50)  # never the bottleneck: the limiter must be

            async def one() -> None:
                nonlocal first, last
                async with gate:
                    started = time.time()
                    first = started if not first else min(first, started)
                    await client.get_last_data_update()
                    last = max(last, time.time())

            await asyncio.gather(*(one() for _ in range(calls)))
            print(json.dumps({"first": first, "last": last, "retries": client.retries}), flush=True)
    finally:
        await pool.close()


if __name__ == "__main__":
    db, base, n, req, win = sys.argv[1:6]
    asyncio.run(main(db, base, int(n), int(req), float(win)))
