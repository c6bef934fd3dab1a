"""Send benchmark: the whole delivery path of a real worker process, against the limits of the host.

    python bench/send.py [--size N] [--only email|sms|push] [--workers K] [--latency-ms L]

Needs Debian's postfix for smtp-sink and smtp-source (`apt-get install postfix`).
Starts an embedded PostgreSQL (fsync on), loads N due message rows per channel (as ingest would
leave them), then starts `optibridge worker` and times it until every message is final:

- email: personalized ~3 KB e-mails (Liquid template, click tracking, List-Unsubscribe) over 16
  SMTP connections into postfix's smtp-sink, beside smtp-source (16 sessions, 3 KB) into the same
  sink in the same run; ratio to smtp-source's rate (target >= 1,000/s and >= 30 %);
- sms: the Twilio adapter against the loopback HTTP sink, beside a bare aiohttp loop sending the
  same requests over 16 connections (target >= 3,000/s and >= 40 %).

With --latency-ms L (issue 15) the loopback sinks (python -m optibridge.sinks) delay every SMTP
reply and HTTP response by L, and the channels keep their default settings (sends in flight, SMTP
pool, HTTP connections): e-mail over SMTP, SMS through the Twilio adapter, push through the JSON
adapter. The reference in the same run is a bare loop with as many connections as the workers
may open (workers x 512: aiosmtplib for SMTP, aiohttp for HTTP; on uvloop and with the garbage
collector tuned, as the workers) at the same latency. `--options 'in_flight = 300'` replaces the
channels' defaults and `--bare-connections N` the reference's connections, to measure the ratio at
other sends in flight (docs/benchmarks.md, session 11).

The workers are started first; once they run, the messages are loaded due a few seconds later,
and the rate counts from that due time to the last send (as in production, where workers are
running when a campaign falls due). "p99_ms" is the 99th percentile of sent time minus due time.

Peak RSS is that of the worker process (target < 200 MB). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
import uvloop

sys.path.insert(0, str(Path(__file__).parent))
from channels import (
    CONNECTIONS,
    find_tool,
    free_port,
    run_smtp_source,
    send_json_bare,
    send_sms_bare,
    send_smtp_bare,
    wait_for_port,
)
from optibridge.core.collector import GC_YOUNG_THRESHOLD, tune_collector
from optibridge.core.secretbox import generate_key
from optibridge.store.embedded import EmbeddedPostgres

TENANT = "bench"
EMAIL, SMS, PUSH = 504, 505, 506
DEFAULT_CONNECTIONS = 512  # SmtpSettings.pool_size and HttpOptions.max_connections defaults
NAMES = ["Ann", "Bo", "Chloé", "Dev", "Emi", "Femi", "Gus", "Hana"]
# About 3 KB: a typical campaign e-mail, mostly fixed HTML with personalization tags and links.
PARAGRAPH = (
    '<p style="font-family:Arial,sans-serif;font-size:14px;line-height:20px;color:#333333">'
    "This week we picked new arrivals, best sellers and a few favourites we think you will like. "
    "Free delivery on orders over 50 euros, easy returns within 30 days, and member prices on "
    "everything in the selection below.</p>\n"
)
HTML = (
    '<html><body style="margin:0;padding:0;background:#f4f4f4">\n'
    '<table width="600" align="center" cellpadding="0" cellspacing="0" style="background:#ffffff">\n'
    '<tr><td><h1 style="font-family:Arial,sans-serif;color:#111111">'
    "Hello [%FirstName%], your weekly picks</h1>"
    "</td></tr>\n<tr><td>\n"
    + PARAGRAPH
    * 7
    + "<p>Prices shown for {{ City }}. Your member code: <b>{{ Code }}</b>.</p>\n"
    '<p><a href="https://shop.example/picks?c={{ customer_id }}">See your picks</a> - '
    '<a href="https://shop.example/account">Your account</a></p>\n'
    '<p style="font-size:11px;color:#999999">Sent to {{ Email }}. '
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n'
    "</td></tr></table></body></html>"
)
TEXT = (
    "Hello [%FirstName%], your weekly picks\n\nPrices shown for {{ City }}. Your member code: {{ Code }}.\n"
    "See your picks: https://shop.example/picks?c={{ customer_id }}\n"
)


def sh(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "optibridge", *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"optibridge {' '.join(args[:3])} failed: {proc.stderr.strip()}")


def load_messages(url: str, channel_id: int, campaign_id: int, size: int, kind: str, due: float) -> None:
    """`size` message rows as ingest leaves them, due at `due` (epoch seconds)."""
    address = "'c' || g || '@example.test'" if kind == "email" else "'+1' || (2000000000 + g)::text"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, first_event, status) "
            "VALUES (%s, %s, %s, %s, 1, 'ingested')",
            (TENANT, channel_id, campaign_id, kind),
        )
        conn.execute(
            f"""INSERT INTO messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id,
                                      scheduled_at, send_at, address, attrs)
                SELECT gen_random_uuid(), %(t)s, %(ch)s, %(c)s, 'C' || g, 1, to_timestamp(%(due)s),
                       to_timestamp(%(due)s), {address},
                       jsonb_build_object('FirstName', (%(names)s::text[])[1 + g %% 8], 'City', 'Lyon',
                                          'Code', 'X' || g, 'Email', 'c' || g || '@example.test')
                FROM generate_series(1, %(n)s) g""",
            {"t": TENANT, "ch": channel_id, "c": campaign_id, "n": size, "names": NAMES, "due": due},
        )
        conn.execute("ANALYZE messages")


# Seconds between the workers being up and the messages falling due: loading `size` rows must
# end before (a row committed late starts the clock at its commit, see run_workers).
LOAD_LEAD_S = 3.0
LOAD_LEAD_S_PER_ROW = 1 / 40_000


def run_workers(
    env: dict[str, str],
    url: str,
    channel_id: int,
    campaign_id: int,
    kind: str,
    size: int,
    log: Path,
    count: int,
) -> tuple[float, float, float, float]:
    """Start `count` workers and wait until they run (their procrastinate heartbeat), then load
    the channel's messages due a few seconds later and time the workers from that due time until
    every message is final. (rate, peak RSS MB of the largest worker, worker CPU µs per message
    from the due time: steadier than the rate on a shared box, p99 of sent time minus due time).

    As in production, the workers are running when a campaign falls due: interpreter start,
    imports and connecting (~1.5 s of a 30 s run, measured) are not charged to the send rate, as
    the bare loops' own set-up is not charged to theirs. The clock starts at the due time, or at
    the load's commit if that came later (no row is visible before it)."""
    started = time.time()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "optibridge", "worker", "--concurrency", "8"],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        for _ in range(count)
    ]
    procs = [psutil.Process(w.pid) for w in workers]
    peak = 0
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while (
                conn.execute(
                    "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat >= to_timestamp(%s)",
                    (started,),
                ).fetchone()
                or (0,)
            )[0] < count:
                if any(w.poll() is not None for w in workers) or time.time() - started > 120:
                    raise SystemExit(f"the workers did not start; see {log}")
                time.sleep(0.1)
            due = time.time() + LOAD_LEAD_S + size * LOAD_LEAD_S_PER_ROW
            load_messages(url, channel_id, campaign_id, size, kind, due)
            loaded = time.time()
            while time.time() < due:
                time.sleep(0.01)
            cpu_before = sum(t.user + t.system for t in (p.cpu_times() for p in procs))
            start = max(due, loaded)
            # Polling must not tax the database the workers use: two index probes on the partial
            # indexes, four times a second; the end time comes from the rows, not from the poll.
            while conn.execute(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE tenant_id = %(t)s AND channel_id = %(ch)s "
                "AND state = 'pending') OR EXISTS (SELECT 1 FROM messages WHERE tenant_id = %(t)s "
                "AND channel_id = %(ch)s AND state = 'claimed')",
                {"t": TENANT, "ch": channel_id},
            ).fetchone() == (True,):
                peak = max(peak, *(p.memory_info().rss for p in procs))
                if any(w.poll() is not None for w in workers) or time.time() - started > 3600:
                    raise SystemExit(f"a worker stopped or too slow; see {log}")
                time.sleep(0.25)
            peak = max(peak, *(p.memory_info().rss for p in procs))
            cpu = sum(t.user + t.system for t in (p.cpu_times() for p in procs)) - cpu_before
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'sent'), extract(epoch FROM max(updated_at)) "
                "FROM messages WHERE channel_id = %s",
                (channel_id,),
            ).fetchone()
            assert row is not None
            elapsed = float(row[1]) - start
            late = conn.execute(
                "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at "
                "- greatest(send_at, to_timestamp(%s)))) FROM messages "
                "WHERE channel_id = %s AND state = 'sent'",
                (start, channel_id),
            ).fetchone()
            p99_ms = float(late[0] or 0) * 1000 if late else 0.0
            if row[0] != size:
                states = conn.execute(
                    "SELECT state::text, reason, count(*) FROM messages WHERE channel_id = %s GROUP BY 1, 2",
                    (channel_id,),
                ).fetchall()
                raise SystemExit(f"only {row[0]} of {size} sent: {states}")
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    return size / elapsed, peak / 2**20, cpu / size * 1e6, p99_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--only", choices=["email", "sms", "push"])
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2 cores: 2)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sinks delay every reply by this")
    parser.add_argument(
        "--options",
        default="",
        help="with --latency-ms: channel options instead of the defaults, as TOML key = value pairs "
        "(e.g. 'in_flight = 300'), to measure the ratio at other sends in flight",
    )
    parser.add_argument(
        "--bare-connections",
        type=int,
        default=0,
        help="with --latency-ms: the bare loop's connections (default: workers x 512, the defaults')",
    )
    parser.add_argument(
        "--gc-young-threshold",
        type=int,
        default=GC_YOUNG_THRESHOLD,
        help="the workers' gc_young_threshold, also used by the sink and the bare loops (0: Python's)",
    )
    args = parser.parse_args()
    # The bare loops run with the collector the workers run with (core/collector.py): the reference
    # must not be slowed by a setting the workers are spared.
    tune_collector(args.gc_young_threshold)
    if args.latency_ms:
        latency_main(args)
        return
    size = args.size
    work = Path(tempfile.mkdtemp(prefix="optibridge-bench-send-"))
    pg = EmbeddedPostgres(work / "pg", fsync=True)
    children: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"bench": "send", "size": size, "workers": args.workers}
    try:
        url = pg.start()
        sink_port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        smtp_sink = subprocess.Popen([find_tool("smtp-sink"), *user, f"127.0.0.1:{sink_port}", "1000"])
        children.append(smtp_sink)
        wait_for_port(sink_port, smtp_sink)
        http_sink = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "optibridge.sinks",
                "--no-smtp",
                "--http-port",
                "0",
                "--no-record",
                "--gc-young-threshold",
                str(args.gc_young_threshold),
            ],
            stdout=subprocess.PIPE,
        )
        children.append(http_sink)
        assert http_sink.stdout is not None
        http_port = next(
            json.loads(line)["http_port"]
            for line in iter(http_sink.stdout.readline, b"")
            if line.startswith(b"{")
        )
        http_base = f"http://127.0.0.1:{http_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")} | {
            "OPTIBRIDGE_DATABASE_URL": url,
            "OPTIBRIDGE_SECRET_KEY": generate_key(),
            "OPTIBRIDGE_PUBLIC_URL": "https://track.example",
            "OPTIBRIDGE_LOG_LEVEL": "WARNING",
            "OPTIBRIDGE_GC_YOUNG_THRESHOLD": str(args.gc_young_threshold),
            "OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": '["127.0.0.0/8", "::1/128"]',  # sinks on loopback
        }
        sh(env, "db", "upgrade")
        tenant = work / "tenant.toml"
        tenant.write_text(
            f"""id = "{TENANT}"
api_base_url = "http://127.0.0.1:9"
api_key = "k"
[[channels]]
name = "email"
kind = "email"
channel_id = {EMAIL}
options = {{ lanes = 8, chunk = 256 }}
[channels.provider]
type = "smtp"
host = "127.0.0.1"
port = {sink_port}
tls = "none"
from_address = "news@shop.example"
pool_size = {CONNECTIONS}
[[channels]]
name = "sms"
kind = "sms"
channel_id = {SMS}
options = {{ lanes = 8, chunk = 256 }}
[channels.provider]
type = "twilio"
account_sid = "ACbench"
auth_token = "bench-token"
from_number = "+15005550006"
base_url = "{http_base}"
max_connections = {CONNECTIONS}
"""
        )
        sh(env, "tenants", "add", "--file", str(tenant))
        (work / "e.html").write_text(HTML)
        (work / "e.txt").write_text(TEXT)
        (work / "s.txt").write_text(
            "Hi {{ FirstName }}, your code is {{ Code }}. Valid in {{ City }} this week."
        )
        sh(
            env,
            "templates",
            "add",
            TENANT,
            "email",
            "--id",
            "1",
            "--name",
            "Picks",
            "--body",
            str(work / "e.html"),
            "--text",
            str(work / "e.txt"),
            "--subject",
            "{{ FirstName }}, 20% off your picks",
        )
        sh(
            env,
            "templates",
            "add",
            TENANT,
            "sms",
            "--id",
            "1",
            "--name",
            "Code",
            "--body",
            str(work / "s.txt"),
        )

        if args.only in (None, "email"):
            rate, rss, cpu_us, p99 = run_workers(
                env, url, EMAIL, 1, "email", size, work / "worker.log", args.workers
            )
            result.setdefault("p99_ms", {})["email"] = round(p99)
            limit = run_smtp_source(find_tool("smtp-source"), sink_port, size)
            reuse = run_smtp_source(find_tool("smtp-source"), sink_port, size, "-d")
            print(
                f"email: optibridge {rate:,.0f}/s (worker peak RSS {rss:.0f} MB, CPU {cpu_us:.0f} µs/msg); "
                f"smtp-source {limit:,.0f}/s (ratio {rate / limit:.2f}); "
                f"smtp-source -d {reuse:,.0f}/s (ratio {rate / reuse:.2f})",
                flush=True,
            )
            result |= {
                "rate": round(rate),
                "unit": "emails/s",
                "limit_rate": round(limit),
                "ratio": round(rate / limit, 3),
                "limit_rate_reuse": round(reuse),
                "ratio_reuse": round(rate / reuse, 3),
                "peak_rss_mb": round(rss, 1),
                "worker_cpu_us_per_msg": round(cpu_us, 1),
            }
        if args.only in (None, "sms"):
            rate, rss, cpu_us, p99 = run_workers(
                env, url, SMS, 2, "sms", size, work / "worker.log", args.workers
            )
            result.setdefault("p99_ms", {})["sms"] = round(p99)
            bare = asyncio.run(send_sms_bare(http_base, size))
            print(
                f"sms: optibridge {rate:,.0f}/s (worker peak RSS {rss:.0f} MB, CPU {cpu_us:.0f} µs/msg); "
                f"bare aiohttp loop {bare:,.0f}/s (ratio {rate / bare:.2f})",
                flush=True,
            )
            result |= {
                "sms_rate": round(rate),
                "sms_limit_rate": round(bare),
                "sms_ratio": round(rate / bare, 3),
                "sms_peak_rss_mb": round(rss, 1),
                "sms_worker_cpu_us_per_msg": round(cpu_us, 1),
            }
            if "rate" not in result:
                result |= {
                    "rate": round(rate),
                    "unit": "messages/s",
                    "limit_rate": round(bare),
                    "ratio": round(rate / bare, 3),
                    "peak_rss_mb": round(rss, 1),
                }
        print(json.dumps(result))
    finally:
        for child in children:
            child.terminate()
            child.wait(10)
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def latency_main(args: argparse.Namespace) -> None:
    """Issue 15: the same pipeline against sinks answering after `latency_ms`, default settings."""
    size, latency = args.size, args.latency_ms
    kinds = [args.only] if args.only else ["email", "sms", "push"]
    work = Path(tempfile.mkdtemp(prefix="optibridge-bench-send-"))
    pg = EmbeddedPostgres(work / "pg", fsync=True)
    result: dict[str, Any] = {
        "bench": "send", "size": size, "workers": args.workers, "latency_ms": latency,
        "load_avg": [round(x, 2) for x in os.getloadavg()], "p99_ms": {},
    }  # fmt: skip
    if args.options:
        result["options"] = args.options
    sink: subprocess.Popen[bytes] | None = None
    try:
        url = pg.start()
        sink = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "optibridge.sinks",
                "--smtp-port",
                "0",
                "--http-port",
                "0",
                "--no-record",
                "--latency-ms",
                str(latency),
                "--gc-young-threshold",
                str(args.gc_young_threshold),
            ],
            stdout=subprocess.PIPE,
        )
        assert sink.stdout is not None
        ports = next(json.loads(line) for line in iter(sink.stdout.readline, b"") if line.startswith(b"{"))
        http_base = f"http://127.0.0.1:{ports['http_port']}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")} | {
            "OPTIBRIDGE_DATABASE_URL": url,
            "OPTIBRIDGE_SECRET_KEY": generate_key(),
            "OPTIBRIDGE_PUBLIC_URL": "https://track.example",
            "OPTIBRIDGE_LOG_LEVEL": "WARNING",
            "OPTIBRIDGE_GC_YOUNG_THRESHOLD": str(args.gc_young_threshold),
            "OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": '["127.0.0.0/8", "::1/128"]',
        }
        sh(env, "db", "upgrade")
        options = f"options = {{ {args.options} }}" if args.options else ""
        push_template = (
            '{"to": "{{to}}", "title": "{{subject}}", "body": "{{body}}", "ref": "{{message_id}}"}'
        )
        tenant = work / "tenant.toml"
        tenant.write_text(
            f"""id = "{TENANT}"
api_base_url = "http://127.0.0.1:9"
api_key = "k"
[[channels]]
name = "email"
kind = "email"
channel_id = {EMAIL}
{options}
[channels.provider]
type = "smtp"
host = "127.0.0.1"
port = {ports["smtp_port"]}
tls = "none"
from_address = "news@shop.example"
[[channels]]
name = "sms"
kind = "sms"
channel_id = {SMS}
{options}
[channels.provider]
type = "twilio"
account_sid = "ACbench"
auth_token = "bench-token"
from_number = "+15005550006"
base_url = "{http_base}"
[[channels]]
name = "push"
kind = "push"
channel_id = {PUSH}
{options}
[channels.provider]
type = "json"
url = "{http_base}/json/push"
body_template = {json.dumps(push_template)}
provider_id_path = "data.id"
"""
        )
        sh(env, "tenants", "add", "--file", str(tenant))
        (work / "e.html").write_text(HTML)
        (work / "e.txt").write_text(TEXT)
        (work / "s.txt").write_text(
            "Hi {{ FirstName }}, your code is {{ Code }}. Valid in {{ City }} this week."
        )
        html, text = str(work / "e.html"), str(work / "e.txt")
        sh(env, "templates", "add", TENANT, "email", "--id", "1", "--name", "Picks", "--body", html,
           "--text", text, "--subject", "{{ FirstName }}, 20% off your picks")  # fmt: skip
        for name in ("sms", "push"):
            sh(
                env,
                "templates",
                "add",
                TENANT,
                name,
                "--id",
                "1",
                "--name",
                "Code",
                "--body",
                str(work / "s.txt"),
            )
        connections = args.bare_connections or args.workers * DEFAULT_CONNECTIONS
        channel_of = {"email": EMAIL, "sms": SMS, "push": PUSH}
        for n, kind in enumerate(kinds, start=1):
            rate, rss, cpu_us, p99 = run_workers(
                env, url, channel_of[kind], n, kind, size, work / "worker.log", args.workers
            )
            # On uvloop, as the workers run: the reference gets the same event loop (measured:
            # +4 % for the bare HTTP loop at 50 ms, +1 % at 200 ms, over asyncio's).
            if kind == "email":
                bare = uvloop.run(send_smtp_bare(ports["smtp_port"], size, connections))
            elif kind == "sms":
                bare = uvloop.run(send_sms_bare(http_base, size, connections))
            else:
                bare = uvloop.run(send_json_bare(f"{http_base}/json/push", size, connections))
            print(
                f"{kind} at {latency:.0f} ms: optibridge {rate:,.0f}/s (worker peak RSS {rss:.0f} MB, "
                f"CPU {cpu_us:.0f} µs/msg, p99 lateness {p99:,.0f} ms); bare loop with {connections} "
                f"connections {bare:,.0f}/s (ratio {rate / bare:.2f})",
                flush=True,
            )
            result[kind] = {
                "rate": round(rate), "limit_rate": round(bare), "ratio": round(rate / bare, 3),
                "peak_rss_mb": round(rss, 1), "worker_cpu_us_per_msg": round(cpu_us, 1),
            }  # fmt: skip
            result["p99_ms"][kind] = round(p99)
        print(json.dumps(result))
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(10)
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
