"""A delivery lookup for the sinks: "which of these message ids did you accept?"

The dispatcher asks a channel's `delivery_lookup_url` after a crash, to settle messages whose
outcome it never recorded (docs/delivery.md). Real providers answer that through their own APIs
(message search by a custom id); this serves the same question for the SMTP and HTTP sinks.

    POST /delivered  {"message_ids": ["...", ...]}  ->  {"delivered": ["...", ...]}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web


def smtp_ids(message_ids: Iterable[str]) -> set[str]:
    """Message-IDs as the SMTP sink records them (`<id>@domain`) to the dispatcher's ids."""
    return {m.partition("@")[0] for m in message_ids}


class DeliveryLookup:
    def __init__(self, accepted: Callable[[], set[str]], host: str = "127.0.0.1", port: int = 0) -> None:
        self.accepted = accepted
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _delivered(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            asked = [str(i) for i in body["message_ids"]]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected {"message_ids": [...]}'}, status=400)
        known = self.accepted()
        return web.json_response({"delivered": [i for i in asked if i in known]})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/delivered", self._delivered)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for address in self._runner.addresses:  # the port actually bound, when 0 was asked for
            self.port = int(address[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/delivered"

    async def __aenter__(self) -> DeliveryLookup:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
