"""Request body limits in size and time, for every route, before the app runs.

One ASGI middleware wraps the whole service (web/app.py). For each request it picks the first rule
of `rules()` whose path pattern matches, then:

- a Content-Length over the rule's limit (or not a number) is answered 413 at once: the app, and so
  authentication and the database, never see the request, and the body is never read;
- otherwise `receive` is wrapped: bytes are counted as the app takes them, and past the limit the
  app gets `http.disconnect` while the client gets 413 (a chunked body is never buffered beyond
  the limit, whatever the app does with it);
- the whole body must arrive within the rule's deadline, counted from the request's arrival, or the
  client gets 408: a body trickled at 1 byte/s holds a request slot for the deadline, never longer,
  and no route takes a database connection before its body is in (the listener reads first; the
  admin API's auth gate, web/apigate.py, only looks the key up and lets the connection go).

These responses carry `Connection: close`: the unread rest of the body is not drained.

Limits, from the payloads the routes take (settings in core/config.py, docs/admin-api.md "Limits"):

  rule             paths                                      bytes (setting)            deadline
  contacts import  POST /api/v1/tenants/{t}/contacts/import   64 MiB (max_import_bytes)  300 s *
  templates        /api/v1/tenants/{t}/channels/{c}/templates 8 MiB (8 x max_body_bytes) 10 s (body_timeout_s)
                   (a template's body and text_body are up to 1,000,000 characters each; *: import_timeout_s)
  admin API        /api/v1/...                                1 MiB (max_body_bytes)     10 s (body_timeout_s)
  event 14         /optimove/{t}/{tok}/channels/{c}/engagements 16 KiB                  10 s
  sms aggregator   /aggregator/... (campaign batches)         4 MiB (aggregator.MAX_BODY) 10 s
  listener         /optimove/...                              64 KiB (listener.MAX_BODY) 10 s
  receipts         /r/...                                     1 MiB (a generic batch)    10 s
  tracking         /t/...                                     64 KiB (unsubscribe: 8 KiB) 10 s
  dashboard        /ui/...                                    256 KiB (forms)            10 s
  anything else    /livez /readyz /healthz /metrics /docs ... 64 KiB (they take none)    10 s
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Protocol

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from optibridge.core.logs import get_logger

log = get_logger(__name__)

KIB = 1024
MIB = 1024 * 1024
LISTENER_BYTES = 64 * KIB
ENGAGEMENT_BYTES = 16 * KIB
AGGREGATOR_BYTES = 4 * MIB  # web/aggregator.py MAX_BODY: a batch of 10,000 recipients
RECEIPTS_BYTES = 1 * MIB
TRACKING_BYTES = 64 * KIB
DASHBOARD_BYTES = 256 * KIB
OTHER_BYTES = 64 * KIB
TEMPLATES_FACTOR = 8
DISCONNECT: Message = {"type": "http.disconnect"}


class LimitSettings(Protocol):
    max_body_bytes: int
    max_import_bytes: int
    body_timeout_s: float
    import_timeout_s: float


@dataclass(frozen=True)
class Rule:
    name: str
    path: re.Pattern[str]
    methods: frozenset[str] | None  # None: every method
    max_bytes: int
    timeout_s: float

    def matches(self, method: str, path: str) -> bool:
        return (self.methods is None or method in self.methods) and self.path.match(path) is not None


def rules(settings: LimitSettings) -> tuple[Rule, ...]:
    """First match wins: the most specific rules come first, the catch-all last."""
    small = settings.body_timeout_s
    return (
        Rule(
            "contacts import",
            re.compile(r"^/api/v1/tenants/[^/]+/contacts/import/?$"),
            frozenset({"POST"}),
            settings.max_import_bytes,
            settings.import_timeout_s,
        ),
        Rule(
            "templates",
            re.compile(r"^/api/v1/tenants/[^/]+/channels/[^/]+/templates(/|$)"),
            None,
            TEMPLATES_FACTOR * settings.max_body_bytes,
            small,
        ),
        Rule("admin API", re.compile(r"^/api(/|$)"), None, settings.max_body_bytes, small),
        # Event 14's webhook (web/engagement_webhook.py): ten short fields, about 1 KiB.
        Rule(
            "engagement webhook",
            re.compile(r"^/optimove/[^/]+/[^/]+/channels/[^/]+/engagements/?$"),
            None,
            ENGAGEMENT_BYTES,
            small,
        ),
        Rule("sms aggregator", re.compile(r"^/aggregator/"), None, AGGREGATOR_BYTES, small),
        Rule("listener", re.compile(r"^/optimove/"), None, LISTENER_BYTES, small),
        Rule("receipts", re.compile(r"^/r/"), None, RECEIPTS_BYTES, small),
        Rule("tracking", re.compile(r"^/t/"), None, TRACKING_BYTES, small),
        Rule("dashboard", re.compile(r"^/ui(/|$)"), None, DASHBOARD_BYTES, small),
        Rule("other", re.compile(r""), None, OTHER_BYTES, small),
    )


def rule_for(table: tuple[Rule, ...], method: str, path: str) -> Rule:
    for rule in table:
        if rule.matches(method, path):
            return rule
    return table[-1]


def declared_length(scope: Scope) -> tuple[int | None, bool]:
    """(Content-Length, whether it is acceptable): absent is (None, True); a non-number or two
    different values are refused (h11/httptools refuse most of these before we see them)."""
    values = {v.strip() for k, v in scope.get("headers", []) if k.lower() == b"content-length"}
    if not values:
        return None, True
    if len(values) != 1:
        return None, False
    (value,) = values
    if not value.isdigit() or len(value) > 19:
        return None, False
    return int(value), True


def error_response(
    status: int, error: str, detail: str, headers: dict[str, str] | None = None
) -> list[Message]:
    """A complete JSON response (`{"error", "detail"}` like the admin API's) as ASGI messages,
    closing the connection: what the client still sends is not read."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


async def send_all(send: Send, messages: list[Message]) -> None:
    for message in messages:
        await send(message)


def too_large(rule: Rule) -> list[Message]:
    return error_response(413, "too large", f"the request body is larger than {rule.max_bytes} bytes")


def too_slow(rule: Rule) -> list[Message]:
    return error_response(408, "timeout", f"the request body was not received within {rule.timeout_s:g} s")


class BodyLimits:
    """The ASGI middleware: see the module's docstring."""

    def __init__(self, app: ASGIApp, table: tuple[Rule, ...]) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = rule_for(self.table, scope["method"], scope["path"])
        length, acceptable = declared_length(scope)
        if not acceptable:
            await send_all(send, error_response(400, "bad request", "invalid Content-Length"))
            return
        if length is not None and length > rule.max_bytes:
            log.info("request body refused", status=413, rule=rule.name, declared=length)
            await send_all(send, too_large(rule))
            return
        chunked = any(k.lower() == b"transfer-encoding" for k, _ in scope.get("headers", []))
        guarded = _Guarded(self.app, rule, scope, receive, send)
        guarded.expects_body = chunked or bool(length)
        await guarded.run()


class _Guarded:
    """One request: counts and times its body, and owns the response once it has refused it."""

    def __init__(self, app: ASGIApp, rule: Rule, scope: Scope, receive: Receive, send: Send) -> None:
        self.app = app
        self.rule = rule
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.body_done = False
        self.started = False  # a response has begun (the app's or ours)
        self.refused = False  # we answered; the app is told the client left
        self.expects_body = False
        self.deadline = asyncio.get_running_loop().time() + rule.timeout_s

    async def run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception:
            if not self.refused:
                raise
            # The app met the disconnect we gave it (ClientDisconnect, ...): the client has its answer.

    async def refuse(self, messages: list[Message], what: str) -> Message:
        self.refused = True
        log.info(
            "request body refused",
            status=messages[0]["status"],
            rule=self.rule.name,
            received=self.received,
            reason=what,
        )
        if not self.started:
            self.started = True
            await send_all(self._send, messages)
        return dict(DISCONNECT)

    async def receive(self) -> Message:
        if self.refused:
            return dict(DISCONNECT)
        if self.body_done:
            return await self._receive()  # only http.disconnect is left to come: no deadline
        remaining = self.deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                message = await self._receive()
        except TimeoutError:
            return await self.refuse(too_slow(self.rule), "deadline")
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.rule.max_bytes:
                return await self.refuse(too_large(self.rule), "size")
            if not message.get("more_body", False):
                self.body_done = True
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # the client already has our 413/408; whatever the app answers now is moot
        if message["type"] == "http.response.start":
            self.started = True
            if self.expects_body and not self.body_done:
                # Answered without reading the whole body (a 401, a route that takes none): close
                # rather than let the server read and discard the rest before the next request.
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
        await self._send(message)


def install(app: Starlette, settings: LimitSettings) -> None:
    """Wrap `app` (FastAPI/Starlette) so the limits run before everything else it does."""
    app.add_middleware(BodyLimits, table=rules(settings))
