"""Several hosts, simulated honestly: the database and two workers in network namespaces.

The database host (PostgreSQL, the SMTP sink and its delivery lookup) and two worker hosts each
run in a namespace of their own, joined by veth pairs on a private /24; workers reach the database
over TCP exactly as from another machine. A campaign is delivered exactly once by both; then, in a
second campaign, one worker's link is cut mid-campaign (packets dropped, no reset): the other
worker finishes the work once the cut one's claims are reconciled (dead worker: no heartbeat), and
when the link comes back the cut-off worker sends nothing twice (counted per message id at the sink).

Skipped with the reason where namespaces cannot be made (not root, no `ip`, a kernel that refuses).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from netnskit import NsPostgres, Topology, in_ns, processes, unavailable

pytestmark = pytest.mark.slow

WHY_NOT = unavailable()
TENANT = "acme"
CHANNEL = 504
SMTP_PORT, CONTROL_PORT = 2525, 8099


@pytest.fixture
def topology() -> Iterator[Topology]:
    if WHY_NOT:
        pytest.skip(f"network namespaces unavailable: {WHY_NOT}")
    topo = Topology(tag=f"{os.getpid() % 46656:03x}"[-3:], subnet=200 * 256 + os.getpid() % 256)
    try:
        topo.build(workers=2)
        yield topo
    finally:
        topo.cleanup()  # always, even when the build or the test failed half-way


def sink_stats(topo: Topology) -> dict[str, int]:
    url = f"http://{topo.addr(1)}:{CONTROL_PORT}/_smtp/stats"
    with urllib.request.urlopen(url, timeout=5) as resp:
        stats: dict[str, int] = json.loads(resp.read())
        return stats


def states(conn: psycopg.Connection[Any], campaign: int) -> dict[str, int]:
    rows = conn.execute(
        "SELECT state::text, count(*) FROM messages WHERE campaign_id = %s GROUP BY 1", (campaign,)
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def add_campaign(conn: psycopg.Connection[Any], campaign: int, size: int) -> None:
    conn.execute(
        "INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, first_event, status) "
        "VALUES (%s, %s, %s, 'email', 1, 'ingested')",
        (TENANT, CHANNEL, campaign),
    )
    conn.execute(
        """INSERT INTO messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id,
                                 scheduled_at, send_at, address, attrs)
           SELECT gen_random_uuid(), %(t)s, %(ch)s, %(c)s, 'C' || g, 1, now(), now(),
                  'c' || g || '@example.test', jsonb_build_object('FirstName', 'Ann')
           FROM generate_series(1, %(n)s) g""",
        {"t": TENANT, "ch": CHANNEL, "c": campaign, "n": size},
    )


def wait_for(what: str, check: Any, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"-- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out: {what}\n{tails}")


@dataclass
class Cluster:
    topo: Topology
    conn: psycopg.Connection[Any]
    started: list[subprocess.Popen[bytes]]
    logs: list[Path]


@contextlib.contextmanager
def cluster(topo: Topology, tmp_path: Path, secret_key: str) -> Iterator[Cluster]:
    """PostgreSQL and the SMTP sink (with its delivery lookup) on the database host; a tenant with
    one e-mail channel; two worker hosts, each with its own data folder (its own result journal)."""
    db_host = topo.addr(1)
    pg = NsPostgres(tmp_path / "pg", topo.db_ns, db_host, topo.cidr)
    logs = [tmp_path / "sink.log", tmp_path / "w1.log", tmp_path / "w2.log", tmp_path / "pg" / "server.log"]
    try:
        admin_url = pg.start()
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute("CREATE DATABASE optibridge")
        url = f"postgresql://postgres@{db_host}:5432/optibridge"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTIBRIDGE_", "PROMETHEUS_"))} | {
            "OPTIBRIDGE_DATABASE_URL": url,
            "OPTIBRIDGE_SECRET_KEY": secret_key,
            "OPTIBRIDGE_LOG_FORMAT": "json",
            "OPTIBRIDGE_LOG_LEVEL": "INFO",
            "OPTIBRIDGE_WORKER_CONCURRENCY": "2",
            # The sink and its lookup are on the namespaces' private /24: the operator opens it.
            "OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": json.dumps([topo.cidr]),
        }
        with processes() as started:
            sink = subprocess.Popen(
                in_ns(topo.db_ns, sys.executable, "-u", "-m", "optibridge.sinks", "--host", db_host,
                      "--smtp-port", str(SMTP_PORT), "--no-http", "--control-port", str(CONTROL_PORT)),
                stdout=logs[0].open("wb"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            started.append(sink)
            cli_env = env | {"OPTIBRIDGE_DATA_DIR": str(tmp_path / "cli")}

            def run(*args: str) -> None:
                subprocess.run([sys.executable, "-m", "optibridge", *args], env=cli_env, capture_output=True,
                               text=True, timeout=120, check=True)  # fmt: skip

            run("db", "upgrade")
            # 4 lanes, and 2 jobs at once per worker: each host works two lanes. 40 messages/s
            # per host, so a campaign lasts long enough to cut a host off in the middle of it.
            lookup = f"http://{db_host}:{CONTROL_PORT}/delivered"
            options = (
                "lanes = 4, chunk = 20, claim_chunks = 1, rate_per_s = 40, tracking = false, "
                f'delivery_lookup_url = "{lookup}"'
            )
            (tmp_path / "tenant.toml").write_text(
                f"""id = "{TENANT}"
api_base_url = "http://{db_host}:9"
api_key = "k"
[[channels]]
name = "email"
kind = "email"
channel_id = {CHANNEL}
options = {{ {options} }}
[channels.provider]
type = "smtp"
host = "{db_host}"
port = {SMTP_PORT}
tls = "none"
from_address = "news@shop.example"
pool_size = 4
"""
            )
            run("tenants", "add", "--file", str(tmp_path / "tenant.toml"))
            (tmp_path / "body.html").write_text("<p>Hello {{ FirstName }}</p>")
            run("templates", "add", TENANT, "email", "--id", "1", "--name", "T", "--body",
                str(tmp_path / "body.html"), "--subject", "Hi")  # fmt: skip
            wait_for("the sink listens", lambda: b'"control_port"' in logs[0].read_bytes(), 30, logs)
            for n in (1, 2):
                started.append(
                    subprocess.Popen(
                        in_ns(topo.worker_ns(n), sys.executable, "-m", "optibridge", "worker"),
                        env=env | {"OPTIBRIDGE_DATA_DIR": str(tmp_path / f"host{n}")},
                        stdout=logs[n].open("wb"),
                        stderr=subprocess.STDOUT,
                    )
                )
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                yield Cluster(topo, conn, started, logs)
    finally:
        pg.stop()


def test_two_worker_hosts_share_a_campaign_and_deliver_it_exactly_once(
    topology: Topology, tmp_path: Path, test_secret_key: str
) -> None:
    with cluster(topology, tmp_path, test_secret_key) as c:
        add_campaign(c.conn, 1, 600)
        wait_for("campaign sent", lambda: states(c.conn, 1) == {"sent": 600}, 120, c.logs)
        s = sink_stats(topology)
        assert (s["count"], s["unique"], s["duplicates"]) == (600, 600, 0)
        for n in (1, 2):  # both hosts took part (each logs its lanes' work)
            assert "send: lane done" in c.logs[n].read_text(), f"host {n} sent nothing"


# The send fence (delivery/fence.py) closes on host 1 about 15 s after its last heartbeat: its
# stalled in-flight sends are given up with their connections reset, so when the link returns
# nothing buffered reaches the sink; host 2 re-sends those claims only after 20 s.
def test_a_host_cut_off_mid_campaign_is_replaced_and_sends_nothing_twice_when_back(
    topology: Topology, tmp_path: Path, test_secret_key: str
) -> None:
    with cluster(topology, tmp_path, test_secret_key) as c:
        add_campaign(c.conn, 2, 1200)
        wait_for("campaign under way", lambda: states(c.conn, 2).get("sent", 0) >= 200, 60, c.logs)
        topology.cut(1)
        cut_at = time.monotonic()
        # Host 2 finishes alone: host 1's claims are settled once it counts as dead (no heartbeat
        # for 20 s), through the sink's delivery lookup.
        wait_for("host 2 finishes alone", lambda: states(c.conn, 2) == {"sent": 1200}, 180, c.logs)
        alone_s = time.monotonic() - cut_at
        s = sink_stats(topology)
        assert (s["count"], s["unique"], s["duplicates"]) == (1200, 1200, 0), s
        topology.mend(1)
        # Host 1 gets its database and sink back: it reconnects and writes or drops what it
        # journaled; it must not send any message again.
        time.sleep(20)
        assert c.started[0].poll() is None  # the sink still runs: its counts are the whole story
        s = sink_stats(topology)
        assert (s["count"], s["unique"], s["duplicates"]) == (1200, 1200, 0), s
        assert states(c.conn, 2) == {"sent": 1200}
        print(f"host 2 finished {alone_s:.0f} s after host 1 was cut off")
