"""Hooks for observability: the client reports each HTTP attempt to whoever listens.

The client does not import the metrics module (the client is usable on its own); the service
registers `core.telemetry.record_optimove_request` here at start-up.
"""

from __future__ import annotations

from collections.abc import Callable

RequestObserver = Callable[[str, "int | str", float], None]
_observers: list[RequestObserver] = []


def add_request_observer(observer: RequestObserver) -> None:
    if observer not in _observers:
        _observers.append(observer)


def request_done(call: str, status: int | str, seconds: float) -> None:
    for observer in _observers:
        observer(call, status, seconds)
