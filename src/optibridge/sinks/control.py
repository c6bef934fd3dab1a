"""Control of an SMTP sink that runs in another process (`python -m optibridge.sinks
--control-port 0`): what it received, its faults, and a delivery lookup over what it accepted.

    GET    /_smtp/stats      {"count", "unique", "duplicates", "connections", "rejections",
                              "unanswered", "open_connections"}
    POST   /_smtp/faults     {"throttle": {"code": 421, "seconds": 5}}
                             {"drop": {"at": "ACCEPTED", "seconds": 5, "count": null}}
                             {"slow": {"delay_s": 0.2, "seconds": 5}}
    DELETE /_smtp/faults     clear them all
    POST   /delivered        the delivery lookup (optibridge.sinks.lookup), over the received mail

Ids are the dispatcher's (the Message-ID's local part), so duplicates count one message received
twice.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from optibridge.sinks.lookup import smtp_ids
from optibridge.sinks.smtp_sink import SmtpSink


def _stats(sink: SmtpSink) -> dict[str, int]:
    per_id = Counter(m.partition("@")[0] for m in sink.message_ids)
    return {
        "count": sink.count,
        "unique": len(per_id),
        "duplicates": sum(n - 1 for n in per_id.values()),
        "connections": sink.connections,
        "rejections": sink.rejections,
        "unanswered": sink.unanswered,
        "open_connections": sink.open_connections,
    }


def _window(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.get("count") is not None:
        out["count"] = int(spec["count"])
    if spec.get("seconds") is not None:
        out["seconds"] = float(spec["seconds"])
    return out


def control_app(sink: SmtpSink) -> web.Application:
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(_stats(sink))

    async def set_faults(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError("expected an object")
            if "throttle" in body:
                spec = body["throttle"]
                sink.throttle(int(spec.get("code", 421)), **_window(spec))
            if "drop" in body:
                spec = body["drop"]
                at = spec.get("at", "MAIL")
                if at not in ("MAIL", "DATA", "ACCEPTED"):
                    raise ValueError("drop.at is MAIL, DATA or ACCEPTED")
                window = _window(spec)
                sink.drop_connections(at=at, count=window.get("count"), seconds=window.get("seconds"))
            if "slow" in body:
                spec = body["slow"]
                sink.slow(float(spec["delay_s"]), **_window(spec))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def clear_faults(request: web.Request) -> web.Response:
        sink.clear_faults()
        return web.json_response({"ok": True})

    async def delivered(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            asked = [str(i) for i in body["message_ids"]]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected {"message_ids": [...]}'}, status=400)
        known = smtp_ids(sink.message_ids)
        return web.json_response({"delivered": [i for i in asked if i in known]})

    app = web.Application()
    app.router.add_get("/_smtp/stats", stats)
    app.router.add_post("/_smtp/faults", set_faults)
    app.router.add_delete("/_smtp/faults", clear_faults)
    app.router.add_post("/delivered", delivered)
    return app


class SinkControl:
    """Serves `control_app(sink)` on host:port (0: a free port) in the caller's event loop."""

    def __init__(self, sink: SmtpSink, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sink = sink
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> SinkControl:
        self._runner = web.AppRunner(control_app(self.sink), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for address in self._runner.addresses:  # the port actually bound, when 0 was asked for
            self.port = int(address[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
