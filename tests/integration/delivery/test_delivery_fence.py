"""The send fence against the real database and a real provider connection (delivery/fence.py).

A worker whose heartbeat stops reaching the database will soon count as dead to the others, who
then send its claims again. Its sends stalled on a cut link must not go out when the link returns:
the fence gives them up before that, and their connections end with a reset, which drops what
the kernel still held to send (a plain close would keep retransmitting it)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from deliverykit import CHANNEL_ID, TENANT, add_campaign, add_tenant, register_worker, runtime

from optibridge.delivery import dispatcher as dsp
from optibridge.delivery.fence import FENCED
from optibridge.delivery.tasks import run_send
from optibridge.runtime import Runtime

from servicekit import free_port


@dataclass
class StallServer:
    """Takes requests and never answers (a provider behind a cut link); notes how each
    connection ended: 'reset' (RST) or 'closed' (FIN)."""

    port: int = field(default_factory=free_port)
    requests: int = 0
    endings: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # bounded by the client: it ends the connection
                data = await reader.read(65536)
                if not data:
                    self.endings.append("closed")
                    return
                self.requests += data.count(b"POST ")
        except ConnectionResetError:
            self.endings.append("reset")
        finally:
            writer.close()


async def age_heartbeat(rt: Runtime, worker: str, seconds: float) -> None:
    async with rt.pool.connection() as conn:
        await conn.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - make_interval(secs => %s) "
            "WHERE id::text = %s",
            (seconds, worker),
        )


async def test_a_worker_whose_heartbeat_stopped_gives_up_its_stalled_sends_with_a_reset(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    stall = StallServer()
    server = await asyncio.start_server(stall.handle, "127.0.0.1", stall.port)
    try:
        async with runtime(db_url, test_secret_key, tmp_path / "data") as rt:
            await add_tenant(rt, stall, chunk=5, claim_chunks=4, in_flight=10)  # type: ignore[arg-type]
            await add_campaign(rt, 1, 20)
            me = await register_worker(rt)
            # The heartbeat is 12 s old and nothing renews it: the others may judge this worker
            # dead at 20 s, so the fence closes at about 20 - 12 - 5 = 3 s from now.
            await age_heartbeat(rt, me, 12.0)
            started = time.monotonic()
            await asyncio.wait_for(run_send(rt, TENANT, CHANNEL_ID, me, budget_s=60), 30)
            took = time.monotonic() - started
            await asyncio.sleep(0.5)  # the server notices the ends of the connections
            async with rt.pool.connection() as conn:
                rows = await (
                    await conn.execute("SELECT state::text AS s, reason FROM messages ORDER BY id")
                ).fetchall()
            after_fence = stall.requests
            await asyncio.sleep(2.0)
            await dsp.dispatcher_of(rt).close()
    finally:
        server.close()
        await server.wait_closed()

    # The job ended long before its budget (60 s) or the provider's timeout: at the fence.
    assert took < 20, took
    # One chunk went out before the fence closed (a provider not yet proven gets one chunk at a
    # time), none after it; it was given up as uncertain (the provider may have it), the rest
    # never left. Its connection ended with a reset.
    assert stall.requests == after_fence == 5
    assert stall.endings, "no connection ended"
    assert set(stall.endings) == {"reset"}, stall.endings
    fenced_rows = [r for r in rows if r["reason"] == FENCED]
    assert len(fenced_rows) == 5, rows
    # Nothing stays claimed: the given-up chunk is pending again (uncertain = resend, the
    # default), and so are the 15 that never left; the provider was not benched for it.
    assert {r["s"] for r in rows} == {"pending"}, rows
    assert len(rows) == 20
