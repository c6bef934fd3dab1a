"""`serve` and `worker`: the long-running processes, their signals and their shutdown.

`serve` runs the HTTP app and the workers in one process tree: with `workers == 1` the worker runs
inside the serve process (one process, the cheapest); with more, each worker is a child process
(`optibridge worker`) that the serve process restarts if it dies and stops when it stops. A child
also exits by itself if its parent disappears, so a kill -9 of serve leaves no orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn

from optibridge.bootstrap import open_runtime
from optibridge.core.config import Settings
from optibridge.core.errors import ConfigError
from optibridge.core.logs import get_logger
from optibridge.runtime import Runtime
from optibridge.web.app import create_app

log = get_logger(__name__)

PARENT_PID_ENV = "OPTIBRIDGE_PARENT_PID"
GRACEFUL_STOP_S = 20.0
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: we stop it together with the workers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _watch_parent(stop: asyncio.Event) -> None:
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent:
        return
    while not stop.is_set():
        if os.getppid() != int(parent):
            log.warning("parent process is gone; worker stopping")
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def _run_worker(runtime: Runtime, stop: asyncio.Event, name: str) -> None:
    """Run a worker until `stop`; if it fails (database gone, ...), start it again after a pause."""
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await _run_worker_once(runtime, stop, name)
        except Exception as exc:
            if time.monotonic() - started > 60:
                failures = 0
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            failures += 1
            log.error("worker failed; restarting", error=" ".join(str(exc).split()), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)


async def _run_worker_once(runtime: Runtime, stop: asyncio.Event, name: str) -> None:
    worker = asyncio.create_task(
        runtime.job_app.run_worker_async(
            concurrency=runtime.settings.worker_concurrency,
            name=name,
            install_signal_handlers=False,
            shutdown_graceful_timeout=GRACEFUL_STOP_S,
            update_heartbeat_interval=5.0,
            stalled_worker_timeout=30.0,
            fetch_job_polling_interval=2.0,
            delete_jobs="successful",
            additional_context={"runtime": runtime},
        )
    )
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if worker in done:
        stopper.cancel()
        worker.result()  # a worker that ended by itself has failed: let its error through
        raise RuntimeError("the worker stopped by itself")
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker


async def run_worker(settings: Settings) -> None:
    stop = asyncio.Event()
    _install_stop_signals(stop)
    async with open_runtime(settings, upgrade=False, pool_size=settings.worker_concurrency + 4) as rt:
        log.info("worker started", concurrency=settings.worker_concurrency)
        watcher = asyncio.create_task(_watch_parent(stop))
        try:
            await _run_worker(rt, stop, name=f"worker-{os.getpid()}")
        finally:
            watcher.cancel()
    log.info("worker stopped")


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)


class WorkerSupervisor:
    """Keeps N `optibridge worker` child processes running until told to stop."""

    def __init__(self, count: int, database_url: str, settings: Settings) -> None:
        self.children = [_Child(i) for i in range(count)]
        self.env = dict(os.environ)
        # Children use the database this process resolved (embedded included) and never start or
        # migrate one themselves.
        self.env["OPTIBRIDGE_DATABASE_URL"] = database_url
        self.env[PARENT_PID_ENV] = str(os.getpid())
        self.env["OPTIBRIDGE_WORKER_CONCURRENCY"] = str(settings.worker_concurrency)
        if settings.secret_key is None:
            self.env["OPTIBRIDGE_SECRET_KEY_FILE"] = str(settings.key_file.absolute())

    def _spawn(self, child: _Child) -> None:
        child.proc = subprocess.Popen([sys.executable, "-m", "optibridge", "worker"], env=self.env)
        child.started_at = time.monotonic()
        log.info("worker process started", index=child.index, pid=child.proc.pid)

    async def run(self, stop: asyncio.Event) -> None:
        for child in self.children:
            self._spawn(child)
        try:
            while not stop.is_set():
                for child in self.children:
                    assert child.proc is not None
                    code = child.proc.poll()
                    if code is None:
                        continue
                    if time.monotonic() - child.started_at > 60:
                        child.restarts = 0  # it ran a good while: start the backoff afresh
                    delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
                    log.warning("worker process exited", index=child.index, code=code, retry_in=delay)
                    child.restarts += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                    if not stop.is_set():
                        self._spawn(child)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.5)
        finally:
            await asyncio.to_thread(self.terminate)

    def terminate(self) -> None:
        live = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_STOP_S + 5
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process did not stop in time; killing it", pid=proc.pid)
                proc.kill()
                proc.wait()


def listen_socket(host: str, port: int) -> socket.socket:
    """Bind before anything else listens, so a taken port is one clear error, not a log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):  # noqa: S104 - only for display
        return "localhost"
    return f"[{host}]" if ":" in host else host


async def run_serve(settings: Settings) -> None:
    stop = asyncio.Event()
    _install_stop_signals(stop)
    sock = listen_socket(settings.host, settings.port)
    async with open_runtime(settings, upgrade=True, sync_tenants=True) as rt:
        app = create_app(rt, expect_workers=settings.workers > 0)
        server = _Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                # On: the tracking router flushes its buffered hits on shutdown.
                lifespan="on",
                timeout_graceful_shutdown=10,
            )
        )
        log.info("listening", url=f"http://{_display_host(settings.host)}:{sock.getsockname()[1]}")
        tasks = [asyncio.create_task(server.serve(sockets=[sock]), name="http")]
        if settings.workers == 1:
            tasks.append(asyncio.create_task(_run_worker(rt, stop, name="serve"), name="worker"))
        elif settings.workers > 1:
            supervisor = WorkerSupervisor(settings.workers, rt.db.url, settings)
            tasks.append(asyncio.create_task(supervisor.run(stop), name="workers"))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        failed = [t for t in tasks if t in done and t.exception() is not None]
        if failed:
            exc = failed[0].exception()
            assert exc is not None
            raise exc
    log.info("stopped")
