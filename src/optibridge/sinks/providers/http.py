"""One HTTP server speaking the send APIs of SES v2, SendGrid v3, Mailgun, Postmark, Vonage and
Plivo, as their documentation and SDKs shape them; it records every request and can delay or
refuse. It also serves the SNS signing certificate (GET /sns/cert.pem) and SNS SubscribeURLs.

    POST /v2/email/outbound-emails            SES SendEmail (SigV4)       200 {"MessageId"}
    POST /v3/mail/send                         SendGrid (Bearer)           202, X-Message-Id
    POST /v3/{domain}/messages                 Mailgun (Basic api:key)     200 {"id", "message"}
    POST /email                                Postmark (server token)     200 {"ErrorCode": 0, ...}
    POST /sms/json                             Vonage SMS API (form)       200 {"messages": [...]}
    POST /v1/Account/{auth_id}/Message/        Plivo (Basic)               202 {"message_uuid": [...]}

Requests without the provider's credentials header are answered 401 as the provider would.
`refuse(status, body)` answers the next requests so; `latency(seconds)` delays every answer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

AWS_SIGV4 = "AWS4-HMAC-SHA256 Credential="


@dataclass(slots=True)
class ProviderRequest:
    provider: str  # ses | sendgrid | mailgun | postmark | vonage | plivo | sns
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


class ProviderSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, cert_pem: bytes | None = None) -> None:
        self._host, self._port = host, port
        self.requests: list[ProviderRequest] = []
        self.cert_pem = cert_pem
        self._delay = 0.0
        self._refusals: list[tuple[int, bytes, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self.max_records = 100_000  # a bench sends many: keep memory bounded

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_post("/v2/email/outbound-emails", self._ses)
        app.router.add_post("/v3/mail/send", self._sendgrid)
        app.router.add_post("/v3/{domain}/messages", self._mailgun)
        app.router.add_post("/email", self._postmark)
        app.router.add_post("/sms/json", self._vonage)
        app.router.add_post("/v1/Account/{auth_id}/Message/", self._plivo)
        app.router.add_get("/sns/subscribe", self._subscribe)
        app.router.add_get("/sns/{name}", self._cert)  # cert.pem; any other name is 404 (recorded)
        return app

    async def __aenter__(self) -> ProviderSink:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self._port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def of(self, provider: str) -> list[ProviderRequest]:
        return [r for r in self.requests if r.provider == provider]

    def latency(self, seconds: float) -> None:
        self._delay = seconds

    def refuse(
        self, status: int, body: Any, *, count: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next `count` provider requests with this status and JSON body."""
        self._refusals.extend([(status, json.dumps(body).encode(), headers or {})] * count)

    async def _take(self, provider: str, request: web.Request, auth_ok: bool) -> web.Response | None:
        body = await request.read()
        if len(self.requests) < self.max_records:
            self.requests.append(
                ProviderRequest(provider, request.method, request.path, dict(request.headers), body)
            )
        if self._delay:
            await asyncio.sleep(self._delay)
        if not auth_ok:
            return web.json_response({"message": "Unauthorized"}, status=401)
        if self._refusals:
            status, answer, headers = self._refusals.pop(0)
            return web.Response(status=status, body=answer, headers=headers, content_type="application/json")
        return None

    async def _ses(self, request: web.Request) -> web.Response:
        ok = (
            request.headers.get("Authorization", "").startswith(AWS_SIGV4) and "X-Amz-Date" in request.headers
        )
        return await self._take("ses", request, ok) or web.json_response(
            {"MessageId": f"0100{uuid.uuid4().hex}-000000"}
        )

    async def _sendgrid(self, request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization", "").startswith("Bearer ")
        refused = await self._take("sendgrid", request, ok)
        return refused or web.Response(status=202, headers={"X-Message-Id": uuid.uuid4().hex[:22]})

    async def _mailgun(self, request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization", "").startswith("Basic ")
        domain = request.match_info["domain"]
        return await self._take("mailgun", request, ok) or web.json_response(
            {"id": f"<{uuid.uuid4().hex}@{domain}>", "message": "Queued. Thank you."}
        )

    async def _postmark(self, request: web.Request) -> web.Response:
        ok = bool(request.headers.get("X-Postmark-Server-Token"))
        refused = await self._take("postmark", request, ok)
        if refused is not None:
            return refused
        sent = json.loads(await request.read())  # aiohttp keeps the body read once
        return web.json_response(
            {
                "To": sent.get("To"),
                "SubmittedAt": "2026-01-01T00:00:00Z",
                "MessageID": str(uuid.uuid4()),
                "ErrorCode": 0,
                "Message": "OK",
            }
        )

    async def _vonage(self, request: web.Request) -> web.Response:
        refused = await self._take("vonage", request, True)
        if refused is not None:
            return refused
        form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        if not form.get("api_key") or not form.get("api_secret"):
            part = {"status": "4", "error-text": "Bad Credentials"}
        else:
            part = {"to": form.get("to", ""), "message-id": uuid.uuid4().hex.upper()[:16], "status": "0"}
        return web.json_response({"message-count": "1", "messages": [part]})

    async def _plivo(self, request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization", "").startswith("Basic ")
        refused = await self._take("plivo", request, ok)
        return refused or web.json_response(
            {
                "api_id": str(uuid.uuid4()),
                "message": "message(s) queued",
                "message_uuid": [str(uuid.uuid4())],
            },
            status=202,
        )

    async def _cert(self, request: web.Request) -> web.Response:
        self.requests.append(ProviderRequest("sns", "GET", request.path, dict(request.headers), b""))
        if self.cert_pem is None or request.match_info["name"] != "cert.pem":
            return web.Response(status=404)
        return web.Response(body=self.cert_pem, content_type="application/x-pem-file")

    async def _subscribe(self, request: web.Request) -> web.Response:
        self.requests.append(ProviderRequest("sns", "GET", request.path_qs, dict(request.headers), b""))
        return web.Response(text="<ConfirmSubscriptionResponse/>", content_type="text/xml")
