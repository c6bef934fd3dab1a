"""Benchmark: HTTP/2 clients for the push providers (FCM, APNs), against one real h2 server.

A Hypercorn server (h2 over TLS on 127.0.0.1, a self-signed certificate made here, at most 1000
concurrent streams per connection, uvloop) runs in a subprocess, so its CPU is not the client's;
it answers every POST after `--latency-ms` with FCM's small JSON body (`{"name": ...}`), or, for
APNs paths (/3/device/...), with APNs's empty 200 echoing `apns-id`. Each candidate sends `--size`
POSTs (~200-byte JSON bodies, FCM-like headers) from `--concurrency` workers, so at most that many
are in flight, verifying TLS against the test CA:

- `optibridge`: our `optibridge.channels.http2.Http2Client` (httpx + h2 under the outbound guard,
  `limit=concurrency`, `limit // 100 + 1` connections);
- `httpx`: a plain `httpx.AsyncClient(http2=True)`, limits raised to `concurrency` connections;
- `niquests-mux`: niquests' `AsyncSession(multiplexed=True)` (urllib3-future, jh2), each worker
  sending and then `gather`-ing its own lazy response, `concurrency // 100 + 1` connections as ours;
- `niquests`: the same session without `multiplexed` (one request per connection at a time);
- `aioapns`: aioapns's `APNs` (its own asyncio h2 protocol, ES256 JWT from a key made here),
  pointed at the loopback server; APNs requests rather than FCM's (its only API), empty answers,
  one patch: it ignores the empty end-of-stream DATA frame Hypercorn sends and APNs does not.
  Skipped when aioapns is not installed (it is not a dev dependency).

Measured per candidate: requests/s (first request to last answer; each client sends one request
before, not counted, so TLS and h2 settings are up), client CPU µs per request
(`time.process_time()` of this process, which runs nothing else meanwhile), TCP connections
(distinct peers the server saw, the warm-up included), p99 request latency, errors, and the
server's CPU share (to show when the server, not the client, was the limit). The ceiling is
concurrency / latency (2,500 requests/s at the defaults).

    python bench/http2_clients.py [--size 5000] [--latency-ms 200] [--concurrency 500] [--repeat 3]
                                  [--only optibridge,httpx,niquests-mux,niquests,aioapns]

Each candidate runs `--repeat` times, the order reversed every other round; figures are medians.
The last line printed is one JSON object: {"bench": "http2_clients", "size": N, "rate": <our
Http2Client's requests/s>, "unit": "requests/s", "limit_rate": <the best candidate's>, "ratio":
rate / limit_rate, "p99_ms": <ours>, "candidates": {name: {rate, cpu_us_per_request, connections,
p99_ms, errors}}}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from optibridge.testing.tls import loopback_certificate

FCM_BODY = json.dumps(
    {
        "message": {
            "token": "f" * 64,
            "notification": {"title": "Your order has shipped", "body": "Track it in the app."},
            "data": {"campaign": "c-1234", "recipient": "r-5678"},
        }
    },
    separators=(",", ":"),
).encode()
FCM_HEADERS = {
    "authorization": "Bearer ya29." + "a" * 180,
    "content-type": "application/json; charset=utf-8",
}
STATS_PATH = "/_stats"

Send = Callable[[int], Awaitable[tuple[int, bytes]]]


# --- the server (a subprocess) ----------------------------------------------------------------


def serve(port: int, cert: str, key: str, latency_s: float) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    peers: set[tuple[str, int]] = set()
    counts = {"requests": 0}
    fcm_answer = b'{"name": "projects/x/messages/1"}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            event = await receive()
            if not event.get("more_body"):
                break
        path = scope["path"]
        if path == STATS_PATH:  # this bench's own question: how many connections since last time
            answer = json.dumps({"connections": len(peers), "requests": counts["requests"]}).encode()
            peers.clear()
            counts["requests"] = 0
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": answer})
            return
        counts["requests"] += 1
        if scope.get("client"):
            peers.add(tuple(scope["client"]))
        await asyncio.sleep(latency_s)
        if path.startswith("/3/device/"):  # APNs: 200, apns-id echoed
            apns_id = dict(scope["headers"]).get(b"apns-id", b"")
            await send({"type": "http.response.start", "status": 200, "headers": [(b"apns-id", apns_id)]})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [(b"content-type", b"application/json; charset=UTF-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": fcm_answer})

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = cert, key
    config.alpn_protocols = ["h2", "http/1.1"]
    config.h2_max_concurrent_streams = 1000
    config.backlog = 2048
    config.keep_alive_timeout = 120
    config.keep_alive_max_requests = 1 << 30  # Hypercorn closes after 1,000 by default; FCM, APNs don't
    config.accesslog = None
    config.errorlog = None
    try:
        import uvloop

        uvloop.run(hypercorn_serve(app, config))  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(hypercorn_serve(app, config))  # type: ignore[arg-type]


@dataclass
class Server:
    port: int
    ca: str
    process: subprocess.Popen[bytes]
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.process.pid)

    def url(self, path: str = "/v1/projects/x/messages:send") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, int]:
        """Connections and requests since the last call (this call's own connection not counted)."""
        with httpx.Client(verify=ssl.create_default_context(cafile=self.ca), http2=False) as client:
            return dict(client.get(self.url(STATS_PATH)).json())

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system


@contextlib.contextmanager
def server(latency_s: float) -> Any:
    with tempfile.TemporaryDirectory(prefix="h2bench-") as folder:
        cert, key = loopback_certificate(Path(folder))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        args = [sys.executable, __file__, "--serve", str(port), cert, key, str(latency_s)]
        # Its stderr is dropped: Hypercorn prints a CancelledError for every connection a client
        # closes. A server that does not start is reported below.
        process = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:  # bounded: until it listens
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("the h2 server did not start") from None
                    time.sleep(0.05)
            yield Server(port, cert, process)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- the candidates -----------------------------------------------------------------------------


def trusting(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


@contextlib.asynccontextmanager
async def optibridge_client(srv: Server, concurrency: int) -> Any:
    from optibridge.channels.http2 import Http2Client
    from optibridge.core.outbound import OutboundPolicy

    client = Http2Client(
        limit=concurrency,
        timeout_s=30.0,
        connect_timeout_s=10.0,
        policy=OutboundPolicy.from_strings(["127.0.0.0/8"]),  # the server is on loopback
        ssl_context=trusting(srv.ca),
    )
    url = srv.url()

    async def send(i: int) -> tuple[int, bytes]:
        status, _, body = await client.request("POST", url, FCM_HEADERS, FCM_BODY)
        return status, body

    try:
        yield send
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def httpx_client(srv: Server, concurrency: int) -> Any:
    client = httpx.AsyncClient(
        http2=True,
        verify=trusting(srv.ca),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=httpx.Timeout(30.0, connect=10.0),
    )
    url = srv.url()

    async def send(i: int) -> tuple[int, bytes]:
        response = await client.post(url, headers=FCM_HEADERS, content=FCM_BODY)
        return response.status_code, response.content

    try:
        yield send
    finally:
        await client.aclose()


def niquests_client(multiplexed: bool) -> Any:
    @contextlib.asynccontextmanager
    async def factory(srv: Server, concurrency: int) -> Any:
        import niquests

        session = niquests.AsyncSession(
            multiplexed=multiplexed,
            disable_http1=True,
            disable_http3=True,
            pool_connections=1,
            pool_maxsize=concurrency // 100 + 1 if multiplexed else concurrency,
            timeout=30.0,
            verify=srv.ca,  # a CA file: verification stays on
        )
        # As requests, a REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment would replace the
        # session's `verify`; our clients ignore the environment too (trust_env=False).
        session.trust_env = False
        url = srv.url()

        async def send(i: int) -> tuple[int, bytes]:
            response = await session.post(url, headers=FCM_HEADERS, data=FCM_BODY)
            if multiplexed:
                await session.gather(response)
            return int(response.status_code or 0), response.content or b""

        try:
            yield send
        finally:
            await session.close()

    return factory


@contextlib.asynccontextmanager
async def aioapns_client(srv: Server, concurrency: int) -> Any:
    from aioapns import APNs, NotificationRequest
    from aioapns.connection import APNsTLSClientProtocol
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    context = trusting(srv.ca)
    context.set_alpn_protocols(["h2"])
    apns = APNs(
        key=pem,
        key_id="KEYID12345",
        team_id="TEAMID1234",
        topic="com.example.app",
        max_connections=concurrency // 1000 + 1,  # APNs allows 1000 streams per connection
        ssl_context=context,
    )

    class LoopbackProtocol(APNsTLSClientProtocol):
        # aioapns connects to Apple's host, named on its protocol class: loopback instead.
        APNS_SERVER = "127.0.0.1"
        APNS_PORT = srv.port

        def on_data_received(self, raw_data: bytes, stream_id: int) -> None:
            # APNs ends a success with its HEADERS frame; Hypercorn sends an empty DATA frame
            # after them, which aioapns would parse as JSON and drop the connection.
            if raw_data:
                super().on_data_received(raw_data, stream_id)

    apns.pool.protocol_class = LoopbackProtocol
    message = json.loads(FCM_BODY)["message"]
    payload = {"aps": {"alert": message["notification"]}, **message["data"]}

    async def send(i: int) -> tuple[int, bytes]:
        result = await apns.send_notification(NotificationRequest(device_token="a" * 64, message=payload))
        return int(result.status), (result.description or "").encode()

    try:
        yield send
    finally:
        apns.pool.close()


def candidates() -> dict[str, Any]:
    found: dict[str, Any] = {"optibridge": optibridge_client, "httpx": httpx_client}
    try:
        import niquests  # noqa: F401
    except ImportError:
        print("niquests is not installed: pip install niquests", file=sys.stderr)
    else:
        found["niquests-mux"] = niquests_client(True)
        found["niquests"] = niquests_client(False)
    try:
        import aioapns  # noqa: F401
    except ImportError:
        print("aioapns is not installed (pip install aioapns): not measured", file=sys.stderr)
    else:
        found["aioapns"] = aioapns_client
    return found


# --- one run ------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run_one(factory: Any, srv: Server, size: int, concurrency: int) -> dict[str, Any]:
    srv.stats()  # reset the server's counters
    latencies: list[float] = []
    errors: list[str] = []
    async with factory(srv, concurrency) as send:
        status, _ = await send(-1)  # warm-up: the connection, TLS, h2 settings
        if status != 200:
            errors.append(f"warm-up: status {status}")
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < size:
                i = next_index
                next_index += 1
                started = time.perf_counter()
                try:
                    status, _ = await send(i)
                except Exception as exc:  # counted and reported, the run goes on
                    errors.append(repr(exc)[:200])
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors.append(f"status {status}")

        server_cpu = srv.cpu_s()
        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, size))))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        server_cpu = srv.cpu_s() - server_cpu
    stats = srv.stats()
    return {
        "rate": size / elapsed,
        "cpu_us_per_request": cpu / size * 1e6,
        "connections": stats["connections"],
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "server_cpu_share": server_cpu / elapsed,
        "server_requests": stats["requests"],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        _, _, port, cert, key, latency = sys.argv
        serve(int(port), cert, key, float(latency))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="comma-separated candidate names")
    args = parser.parse_args()

    found = candidates()
    if args.only:
        found = {name: found[name] for name in args.only.split(",")}
    names = list(found)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    try:
        import uvloop

        run: Callable[[Any], Any] = uvloop.run  # as the workers run (cli/context.py)
    except ImportError:
        run = asyncio.run
    print(
        f"# size {args.size}, latency {args.latency_ms:g} ms, concurrency {args.concurrency} "
        f"(ceiling {args.concurrency / args.latency_ms * 1000:,.0f} requests/s), repeat {args.repeat}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with server(args.latency_ms / 1000) as srv:
        for round_ in range(args.repeat):
            order = names if round_ % 2 == 0 else names[::-1]
            for name in order:
                result = run(run_one(found[name], srv, args.size, args.concurrency))
                results[name].append(result)
                print(
                    f"  round {round_ + 1} {name:13} {result['rate']:8,.0f} requests/s "
                    f"{result['cpu_us_per_request']:6,.0f} µs CPU/request "
                    f"{result['connections']:3} connections  p99 {result['p99_ms']:6,.0f} ms "
                    f"errors {result['errors']}  server CPU {result['server_cpu_share']:.0%}"
                    + (f"  first error: {result['first_error']}" if result["first_error"] else ""),
                    flush=True,
                )
    medians: dict[str, dict[str, Any]] = {}
    for name in names:
        rounds = results[name]
        medians[name] = {
            "rate": round(statistics.median(r["rate"] for r in rounds), 1),
            "cpu_us_per_request": round(statistics.median(r["cpu_us_per_request"] for r in rounds), 1),
            "connections": statistics.median_low(r["connections"] for r in rounds),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 1),
            "errors": sum(r["errors"] for r in rounds),
            "server_cpu_share": round(statistics.median(r["server_cpu_share"] for r in rounds), 2),
        }
    print(f"# medians of {args.repeat}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, m in medians.items():
        print(
            f"{name:13} {m['rate']:8,.0f} requests/s {m['cpu_us_per_request']:6,.0f} µs CPU/request "
            f"{m['connections']:3} connections  p99 {m['p99_ms']:6,.0f} ms  errors {m['errors']}  "
            f"server CPU {m['server_cpu_share']:.0%}"
        )
    ours = medians.get("optibridge")
    best = max(m["rate"] for m in medians.values())
    rate = ours["rate"] if ours else None
    summary = {
        "bench": "http2_clients",
        "size": args.size,
        "rate": rate,
        "unit": "requests/s",
        "limit_rate": best,
        "ratio": round(rate / best, 3) if rate else None,
        "p99_ms": ours["p99_ms"] if ours else None,
        "candidates": {
            name: {k: m[k] for k in ("rate", "cpu_us_per_request", "connections", "p99_ms", "errors")}
            for name, m in medians.items()
        },
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
