"""Benchmark: the channel adapters against real sinks, beside a bare client into the same sink.

(1) Email: our SMTP adapter sends N pre-rendered, personalized ~3 KB messages (multipart text +
    HTML, List-Unsubscribe headers) over 16 pooled connections to Postfix's `smtp-sink`; then
    Postfix's own `smtp-source` (C, 16 sessions, 3,000-byte bodies) sends N into the same sink,
    twice: as `smtp-source -s 16 -m N -l 3000` (a new connection per message: `limit_rate`, the
    reference the targets are stated against) and with `-d` (connections reused, and PIPELINING,
    which aiosmtplib lacks: `limit_rate_reuse`). Needs the Debian package `postfix`.
(2) SMS: our Twilio adapter sends N messages to the HTTP sink (`python -m optibridge.sinks`, in a
    subprocess so its CPU is not ours); then a bare aiohttp loop (same 16 connections, same sink,
    same form bodies, prepared in advance) posts N.

    python bench/channels.py [--size 20000]

Messages go in slices of 1,000 through `send_many`, as a dispatcher job would hand them over.
Each side runs `--rounds` times (default 3), ours and the reference alternating, so that a burst
of load from elsewhere on the machine hits both alike; rates are the medians of the rounds and
ratios the medians of the per-round ratios. The last line printed is one JSON object:
{"bench": "channels", "size": N, "rate": email_rate, "unit": "emails/s", "limit_rate": ...,
 "ratio": ..., "limit_rate_reuse": ..., "ratio_reuse": ..., "sms_rate": ..., "sms_limit_rate": ...,
 "sms_ratio": ..., "peak_rss_mb": ...},
where peak_rss_mb is this (sending) process's peak resident set size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote_plus

import aiohttp

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.core.outbound import OutboundPolicy

# The sinks run on loopback: the operator setting opens exactly that.
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])

CONNECTIONS = 16
SLICE = 1_000
NAMESPACE = uuid.UUID("0b7e4f7a-3f0e-4a55-9a8e-3c1f2b6d9e10")
FIRST_NAMES = ["Zoë", "Liam", "Amélie", "Noah", "Søren", "Mia", "Jürgen", "Ava", "Élodie", "Kai"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):  # up to ~10 s
        if process.poll() is not None:
            raise SystemExit(f"server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def find_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        raise SystemExit(f"{name} not found: install the Debian package 'postfix' (apt-get install postfix)")
    return path


# -- rendered content -------------------------------------------------------------------------------


def rendered_bodies(count: int) -> list[tuple[str, str, str]]:
    """(subject, html, text) triples of about 3 KB together, personalized per customer.

    A pool of distinct renderings is cycled over the campaign, so memory does not grow with N
    (as a dispatcher streaming slices would behave) while every message still differs in its
    recipient, Message-ID and links.
    """
    bodies = []
    for n in range(count):
        name = FIRST_NAMES[n % len(FIRST_NAMES)]
        rows = "".join(
            f"<tr><td>Item {i} picked for {name}</td><td>€{(n * 7 + i) % 90 + 9}.99</td></tr>\n"
            for i in range(14)
        )
        html = (
            f"<html><body><h1>Hello {name}, your weekly picks</h1>\n<table>\n{rows}</table>\n"
            f"<p><a href='https://t.example/c/{n}'>Shop now</a> - "
            f"<a href='https://t.example/u/{n}'>unsubscribe</a></p></body></html>"
        )
        text = f"Hello {name}, your weekly picks\n" + "".join(
            f"- Item {i}: €{(n * 7 + i) % 90 + 9}.99\n" for i in range(14)
        )
        bodies.append((f"{name}, 20% off your picks this week", html, text))
    return bodies


def email_slices(size: int, bodies: list[tuple[str, str, str]]) -> Iterator[list[OutboundMessage]]:
    for start in range(0, size, SLICE):
        batch = []
        for n in range(start, min(start + SLICE, size)):
            subject, html, text = bodies[n % len(bodies)]
            message_id = str(uuid.uuid5(NAMESPACE, f"bench/1/c{n}/1"))
            batch.append(
                OutboundMessage(
                    message_id=message_id,
                    tenant_id="bench",
                    campaign_id=1,
                    customer_id=f"c{n}",
                    template_id=1,
                    to=f"customer{n}@example.test",
                    body=html,
                    subject=subject,
                    text_body=text,
                    headers={
                        "List-Unsubscribe": f"<https://t.example/u/{message_id}>",
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    },
                )
            )
        yield batch


def sms_slices(size: int) -> Iterator[list[OutboundMessage]]:
    for start in range(0, size, SLICE):
        yield [
            OutboundMessage(
                message_id=str(uuid.uuid5(NAMESPACE, f"bench/2/c{n}/2")),
                tenant_id="bench",
                campaign_id=2,
                customer_id=f"c{n}",
                template_id=2,
                to=f"+1555{n:07d}",
                body=f"Hi {FIRST_NAMES[n % len(FIRST_NAMES)]}, 20% off today with code SAVE{n % 1000}. "
                "Reply STOP to opt out",
            )
            for n in range(start, min(start + SLICE, size))
        ]


# -- email ------------------------------------------------------------------------------------------


async def send_emails(port: int, size: int) -> float:
    provider = build_provider(
        "email",
        {
            "type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "tls": "none",
            "from_address": "news@shop.example",
            "from_name": "Shop News",
            "pool_size": CONNECTIONS,
        },
        policy=LOOPBACK,
    )
    bodies = rendered_bodies(1_000)
    sent = 0
    started = time.perf_counter()
    await provider.open()
    try:
        for batch in email_slices(size, bodies):
            results = await provider.send_many(batch)
            sent += sum(1 for r in results if r.outcome is Outcome.SENT)
    finally:
        await provider.close()
    elapsed = time.perf_counter() - started
    if sent != size:
        raise SystemExit(f"email: only {sent} of {size} sent")
    return size / elapsed


def run_smtp_source(source_path: str, port: int, size: int, *extra: str) -> float:
    command = [
        source_path, *extra, "-s", str(CONNECTIONS), "-m", str(size), "-l", "3000",
        "-f", "news@shop.example", "-t", "customer@example.test", f"127.0.0.1:{port}",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return size / (time.perf_counter() - started)


def median_ratio(ours: list[float], theirs: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def bench_email(size: int, rounds: int) -> tuple[list[float], list[float], list[float]]:
    sink_path, source_path = find_tool("smtp-sink"), find_tool("smtp-source")
    port = free_port()
    # -u: smtp-sink refuses to run as root without a user to switch to.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen([sink_path, *user, f"127.0.0.1:{port}", "1000"], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, sink)
        ours, theirs, reuse = [], [], []
        for _ in range(rounds):
            ours.append(asyncio.run(send_emails(port, size)))
            theirs.append(run_smtp_source(source_path, port, size))
            reuse.append(run_smtp_source(source_path, port, size, "-d"))
            print(
                f"email: optibridge {ours[-1]:7.0f}/s  smtp-source {theirs[-1]:7.0f}/s  "
                f"smtp-source -d {reuse[-1]:7.0f}/s",
                flush=True,
            )
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    return ours, theirs, reuse


# -- sms --------------------------------------------------------------------------------------------

SID = "ACbench"
TOKEN = "bench-token"
FROM = "+15005550006"


async def send_sms_adapter(base_url: str, size: int) -> float:
    provider = build_provider(
        "sms",
        {
            "type": "twilio",
            "account_sid": SID,
            "auth_token": TOKEN,
            "from_number": FROM,
            "base_url": base_url,
            "max_connections": CONNECTIONS,
        },
        callback_base_url="https://optibridge.example",
        policy=LOOPBACK,
    )
    sent = 0
    started = time.perf_counter()
    await provider.open()
    try:
        for batch in sms_slices(size):
            results = await provider.send_many(batch)
            sent += sum(1 for r in results if r.outcome is Outcome.SENT)
    finally:
        await provider.close()
    elapsed = time.perf_counter() - started
    if sent != size:
        raise SystemExit(f"sms: only {sent} of {size} sent")
    return size / elapsed


async def send_sms_bare(base_url: str, size: int, connections: int = CONNECTIONS) -> float:
    """The floor: the same requests from a plain aiohttp loop, bodies prepared in advance."""
    import base64

    url = f"{base_url}/2010-04-01/Accounts/{SID}/Messages.json"
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode(),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    callback = quote_plus("https://optibridge.example/receipts/twilio?message_id=")
    bodies = [
        f"To={quote_plus(m.to)}&From={quote_plus(FROM)}&Body={quote_plus(m.body)}"
        f"&StatusCallback={callback}{m.message_id}".encode()
        for batch in sms_slices(size)
        for m in batch
    ]
    ok = 0
    indexes = iter(range(size))
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            nonlocal ok
            for index in indexes:
                async with session.post(url, data=bodies[index], headers=headers) as response:
                    if json.loads(await response.read()).get("sid"):
                        ok += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    if ok != size:
        raise SystemExit(f"sms bare loop: only {ok} of {size} accepted")
    return size / elapsed


async def send_json_bare(url: str, size: int, connections: int) -> float:
    """The floor for push: one small JSON POST per message from a plain aiohttp loop."""
    bodies = [
        json.dumps({"to": f"device-{n}", "title": "Hi", "body": "20% off today"}).encode()
        for n in range(size)
    ]
    headers = {"Content-Type": "application/json"}
    ok = 0
    indexes = iter(range(size))
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            nonlocal ok
            for index in indexes:
                async with session.post(url, data=bodies[index], headers=headers) as response:
                    await response.read()
                    if response.status < 300:
                        ok += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    if ok != size:
        raise SystemExit(f"push bare loop: only {ok} of {size} accepted")
    return size / elapsed


async def send_smtp_bare(port: int, size: int, connections: int) -> float:
    """The floor for e-mail at latency: aiosmtplib, `connections` sessions each sending in turn
    (MAIL, RCPT, DATA, end: four round trips a message, as without pipelining)."""
    import aiosmtplib

    body = ("Subject: weekly picks\r\nFrom: news@shop.example\r\n\r\n" + ("x" * 70 + "\r\n") * 42).encode()
    ok = 0
    indexes = iter(range(size))
    opening = asyncio.Semaphore(32)
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal ok
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, use_tls=False, start_tls=False, timeout=300)
        async with opening:  # connect a few at a time: a burst of hundreds overruns the sink's accept
            await client.connect()
        try:
            for index in indexes:
                await client.sendmail("news@shop.example", [f"c{index}@example.test"], body)
                ok += 1
        finally:
            with contextlib.suppress(Exception):
                await client.quit()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    if ok != size:
        raise SystemExit(f"smtp bare loop: only {ok} of {size} accepted")
    return size / elapsed


def bench_sms(size: int, rounds: int) -> tuple[list[float], list[float]]:
    command = [sys.executable, "-m", "optibridge.sinks", "--no-smtp", "--http-port", "0", "--no-record"]
    sink = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert sink.stdout is not None
        port = None
        for _ in range(10):  # bounded: the sink prints two lines, the second is JSON
            line = sink.stdout.readline().decode()
            if line.startswith("{"):
                port = json.loads(line)["http_port"]
                break
        if port is None:
            raise SystemExit("the HTTP sink did not report its port")
        base_url = f"http://127.0.0.1:{port}"
        ours, bare = [], []
        for _ in range(rounds):
            ours.append(asyncio.run(send_sms_adapter(base_url, size)))
            bare.append(asyncio.run(send_sms_bare(base_url, size)))
            print(f"sms:   optibridge {ours[-1]:7.0f}/s  bare aiohttp loop {bare[-1]:7.0f}/s", flush=True)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    return ours, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    email, source, reuse = bench_email(args.size, args.rounds)
    sms, bare = bench_sms(args.size, args.rounds)
    result = {
        "bench": "channels",
        "size": args.size,
        "rate": round(statistics.median(email), 1),
        "unit": "emails/s",
        "limit_rate": round(statistics.median(source), 1),
        "ratio": round(median_ratio(email, source), 3),
        "limit_rate_reuse": round(statistics.median(reuse), 1),
        "ratio_reuse": round(median_ratio(email, reuse), 3),
        "sms_rate": round(statistics.median(sms), 1),
        "sms_limit_rate": round(statistics.median(bare), 1),
        "sms_ratio": round(median_ratio(sms, bare), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
