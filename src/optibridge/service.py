"""`serve` and `worker`: the long-running processes, their signals and their shutdown.

`serve` runs the HTTP app and the workers in one process tree: with `workers == 1` the worker runs
inside the serve process (one process, the cheapest); with more, each worker is a child process
(`optibridge worker`) that the serve process restarts if it dies and stops when it stops. A child
also exits by itself if its parent disappears, so a kill -9 of serve leaves no orphans behind.

SIGTERM or SIGINT drains: `runtime.draining` is set at once (send jobs stop claiming, finish the
chunk in hand and return their unstarted claims), the worker stops fetching jobs and waits up to
`shutdown_timeout_s` for the running ones, aborting only those still running then; the HTTP server
stops accepting and finishes its requests; worker children get SIGTERM and the same time (plus
STOP_MARGIN_S before a kill). docs/operations.md says what to set terminationGracePeriodSeconds to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn

from optibridge.bootstrap import open_runtime
from optibridge.core import telemetry
from optibridge.core.config import Settings
from optibridge.core.errors import ConfigError
from optibridge.core.logs import database_outage, get_logger, is_database_unreachable
from optibridge.runtime import Runtime
from optibridge.web.app import create_app
from optibridge.web.metrics import start_worker_metrics

log = get_logger(__name__)

PARENT_PID_ENV = "OPTIBRIDGE_PARENT_PID"
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# Beyond shutdown_timeout_s: what aborting the late jobs, closing the pool and exiting may take.
STOP_MARGIN_S = 5.0
DB_PROBE_INTERVAL_S = 1.0
DB_PROBE_TIMEOUT_S = 3.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: we stop it together with the workers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def requested(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("stop requested; draining", signal=sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, requested, sig)


async def _drain_on_stop(runtime: Runtime, stop: asyncio.Event) -> None:
    """The moment a stop is asked, running jobs learn it (`runtime.draining`): a send job stops
    claiming, finishes its chunk and hands back what it has not started."""
    await stop.wait()
    runtime.draining.set()


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


async def _database_answers(runtime: Runtime) -> bool:
    try:
        return await asyncio.wait_for(runtime.job_app.check_connection_async(), DB_PROBE_TIMEOUT_S)
    except Exception as exc:  # any failure to answer is "not yet"; the outage is logged once
        if not is_database_unreachable(exc) and not isinstance(exc, TimeoutError):
            log.debug("database probe failed", error=type(exc).__name__)
        return False


async def _watch_database(runtime: Runtime, stop: asyncio.Event) -> None:
    """While an outage is on record (see core.logs.database_outage), probe the database every
    second; the first answer ends it, with one info line."""
    while not stop.is_set():
        if database_outage.needs_probe:
            if await _database_answers(runtime):
                database_outage.up()
            else:
                database_outage.confirm()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=DB_PROBE_INTERVAL_S)


async def _run_worker(runtime: Runtime, stop: asyncio.Event, name: str) -> None:
    """Run a worker until `stop`; if it fails (database gone, ...), start it again after a pause.

    A lost database is expected (restart, failover): one warning for the outage, no traceback,
    and the worker starts again as soon as the database answers. Anything else is an error.
    """
    telemetry.worker_running(True)
    try:
        await _run_worker_loop(runtime, stop, name)
    finally:
        telemetry.worker_running(False)


async def _run_worker_loop(runtime: Runtime, stop: asyncio.Event, name: str) -> None:
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        outages = database_outage.count
        try:
            await _run_worker_once(runtime, stop, name)
        except Exception as exc:
            if time.monotonic() - started > 60:
                failures = 0
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            failures += 1
            # A worker whose heartbeat or fetch lost the database stops (by itself, once its
            # running jobs are done, or raising): the outage is on record, logged once already.
            unreachable = is_database_unreachable(exc)
            if unreachable:
                database_outage.down(type(exc.__cause__ or exc).__name__)
            if unreachable or database_outage.count != outages or database_outage.active:
                await _wait_for_database(runtime, stop, deadline=time.monotonic() + 600)
                log.info("worker restarting after the database outage")
                continue
            log.error("worker failed; restarting", error=" ".join(str(exc).split()), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)


async def _wait_for_database(runtime: Runtime, stop: asyncio.Event, deadline: float) -> None:
    """Until the database answers (then end the outage), a stop, or `deadline`."""
    while not stop.is_set() and time.monotonic() < deadline:
        if await _database_answers(runtime):
            database_outage.up()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=DB_PROBE_INTERVAL_S)


async def _run_worker_once(runtime: Runtime, stop: asyncio.Event, name: str) -> None:
    worker = asyncio.create_task(
        runtime.job_app.run_worker_async(
            concurrency=runtime.settings.worker_concurrency,
            name=name,
            install_signal_handlers=False,
            # Cancelling the worker (below) makes procrastinate stop fetching and wait this long
            # for the running jobs, then abort those still running.
            shutdown_graceful_timeout=runtime.settings.shutdown_timeout_s,
            update_heartbeat_interval=5.0,
            stalled_worker_timeout=30.0,
            fetch_job_polling_interval=2.0,
            delete_jobs="successful",
            additional_context={"runtime": runtime},
            # worker_middleware: the App's defaults (engine.jobs.create_engine_app)
        )
    )
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if worker in done:
        stopper.cancel()
        worker.result()  # a worker that ended by itself has failed: let its error through
        raise RuntimeError("the worker stopped by itself")
    runtime.draining.set()
    started = time.monotonic()
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    log.info("worker drained", seconds=round(time.monotonic() - started, 2))


async def run_worker(settings: Settings) -> None:
    stop = asyncio.Event()
    _install_stop_signals(stop)
    async with open_runtime(settings, upgrade=False, pool_size=settings.worker_concurrency + 4) as rt:
        log.info("worker started", concurrency=settings.worker_concurrency)
        stop_metrics = None
        if settings.metrics_port is not None:
            token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
            stop_metrics = await start_worker_metrics(settings.host, settings.metrics_port, token)
        side = [
            asyncio.create_task(_watch_parent(stop)),
            asyncio.create_task(_drain_on_stop(rt, stop)),
            asyncio.create_task(_watch_database(rt, stop)),
        ]
        try:
            await _run_worker(rt, stop, name=f"worker-{os.getpid()}")
        finally:
            for task in side:
                task.cancel()
            if stop_metrics is not None:
                await stop_metrics()
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
        self.stop_timeout_s = settings.shutdown_timeout_s + STOP_MARGIN_S
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
                    telemetry.mark_process_dead(child.proc.pid)
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
        deadline = time.monotonic() + self.stop_timeout_s
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


@contextlib.contextmanager
def _summed_metrics(workers: int) -> Iterator[None]:
    """With worker children, every process keeps its counters in one folder that /metrics sums:
    a fresh one per serve process (no stale files of an earlier run or of another serve on this
    machine), removed on exit. An operator's own PROMETHEUS_MULTIPROC_DIR is left as it is."""
    if workers <= 1 or telemetry.multiprocess_dir() is not None:
        yield
        return
    path = tempfile.mkdtemp(prefix="optibridge-metrics-")
    telemetry.enable_multiprocess(path)
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def run_serve(settings: Settings) -> None:
    with _summed_metrics(settings.workers):
        await _run_serve(settings)


async def _run_serve(settings: Settings) -> None:
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
                # The client address (failed-auth limits, logs) is X-Forwarded-For's only when the
                # connection comes from one of these proxies; anyone else's header is ignored.
                proxy_headers=True,
                forwarded_allow_ips=settings.forwarded_allow_ips,
            )
        )
        log.info("listening", url=f"http://{_display_host(settings.host)}:{sock.getsockname()[1]}")
        tasks = [asyncio.create_task(server.serve(sockets=[sock]), name="http")]
        if settings.workers == 1:
            tasks.append(asyncio.create_task(_run_worker(rt, stop, name="serve"), name="worker"))
        elif settings.workers > 1:
            supervisor = WorkerSupervisor(settings.workers, rt.db.url, settings)
            tasks.append(asyncio.create_task(supervisor.run(stop), name="workers"))
        side = [
            asyncio.create_task(_drain_on_stop(rt, stop)),
            asyncio.create_task(_watch_database(rt, stop)),
        ]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in side:
            task.cancel()
        failed = [t for t in tasks if t in done and t.exception() is not None]
        if failed:
            exc = failed[0].exception()
            assert exc is not None
            raise exc
    log.info("stopped")
