"""One HTTP server that behaves like the HTTP providers, records every request, injects faults.

Endpoints (all under `sink.base_url`):

    POST /2010-04-01/Accounts/{sid}/Messages.json   Twilio Messages API (form, Basic auth)
    POST /token                                     Google OAuth2 token endpoint (JWT-bearer grant)
    POST /v1/projects/{project}/messages:send       FCM HTTP v1 (Bearer token from /token)
    POST /json/{name}                               a generic JSON SMS/push API ("to" or "token")
    POST /webhook/{name}                            a webhook receiver
    GET  /_sink/stats   POST /_sink/reset            for a sink running in another process

    async with HttpSink() as sink:
        sink.throttle(seconds=0.5, retry_after=1)   # 429 + Retry-After (Twilio 20429, FCM QUOTA_EXCEEDED)
        sink.fail(status=503, count=2)              # 5xx for the next 2 requests (or rate=0.1)
        sink.latency(0.05)
        sink.invalid_numbers({"+15550000000"})      # Twilio 21211 / generic JSON 400
        sink.unregistered_tokens({"dead-token"})    # FCM UNREGISTERED / generic JSON 410
        ...
        await sink.send_status_callbacks("delivered")  # Twilio-style receipts to StatusCallback

Faults apply to the provider endpoints, never to /token or /_sink.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from optibridge.sinks.faults import Window

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
PROVIDER_KINDS = ("twilio", "fcm", "json", "webhook")


@dataclass(slots=True)
class RecordedRequest:
    kind: str  # "twilio" | "fcm" | "json" | "webhook" | "token"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] | None  # parsed form body (Twilio, token)
    json: Any  # parsed JSON body, or None
    status: int  # what the sink answered
    provider_id: str | None  # the id the sink issued (Twilio sid, FCM name, JSON id)
    received_at: float

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 over the URL and the sorted POST parameters."""
    payload = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _fcm_error(code: int, status: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if error_code is not None:
        error["details"] = [{"@type": _FCM_ERROR_TYPE, "errorCode": error_code}]
    return {"error": error}


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


class HttpSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, record: bool = True, seed: int = 0) -> None:
        self.host = host
        self.port = port
        self.record = record  # False: count only (benchmarks)
        self.requests: list[RecordedRequest] = []
        self.counts: Counter[str] = Counter()  # requests per kind
        self.accepted: Counter[str] = Counter()  # 2xx answers per kind
        self.issued_tokens: set[str] = set()
        self.twilio_auth_tokens: dict[str, str] = {}  # account sid -> auth token seen (to sign callbacks)
        self._random = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self.clear_faults()

    # -- lifecycle ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._twilio)
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._fcm)
        app.router.add_post("/json/{name}", self._json)
        app.router.add_put("/json/{name}", self._json)
        app.router.add_post("/webhook/{name:.*}", self._webhook)
        app.router.add_get("/_sink/stats", self._stats)
        app.router.add_post("/_sink/reset", self._reset)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        server = site._server  # the bound port, when 0 was asked for
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> HttpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- recorded data --------------------------------------------------------------------------

    def of_kind(self, kind: str, *, accepted_only: bool = False) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind == kind and (r.accepted or not accepted_only)]

    def reset(self) -> None:
        """Forget recorded requests and counters (faults and issued tokens stay)."""
        self.requests.clear()
        self.counts.clear()
        self.accepted.clear()

    # -- faults ---------------------------------------------------------------------------------

    def clear_faults(self) -> None:
        self._throttle: tuple[Window, float] | None = None
        self._fail: tuple[Window, int, float] | None = None
        self._latency = 0.0
        self._invalid_numbers: set[str] = set()
        self._unregistered: set[str] = set()

    def throttle(
        self, *, seconds: float | None = None, count: int | None = None, retry_after: float = 1
    ) -> None:
        """Answer 429 with Retry-After for `seconds` and/or the next `count` requests."""
        self._throttle = (Window(count=count, seconds=seconds), retry_after)

    def fail(
        self, *, status: int = 503, rate: float = 1.0, count: int | None = None, seconds: float | None = None
    ) -> None:
        """Answer `status` (5xx) to a `rate` share of requests, within the count/time window."""
        self._fail = (Window(count=count, seconds=seconds), status, rate)

    def latency(self, seconds: float) -> None:
        self._latency = seconds

    def invalid_numbers(self, numbers: Iterable[str]) -> None:
        self._invalid_numbers.update(numbers)

    def unregistered_tokens(self, tokens: Iterable[str]) -> None:
        self._unregistered.update(tokens)

    async def _injected(self, kind: str) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """(status, JSON body, headers) of an injected fault for this request, or None."""
        if self._latency:
            await asyncio.sleep(self._latency)
        if self._throttle is not None:
            window, retry_after = self._throttle
            if window.hit():
                headers = {"Retry-After": f"{retry_after:g}"}
                if kind == "twilio":
                    body = {"code": 20429, "message": "Too Many Requests", "status": 429}
                elif kind == "fcm":
                    body = _fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", "QUOTA_EXCEEDED")
                else:
                    body = {"error": "rate limited"}
                return 429, body, headers
        if self._fail is not None:
            window, status, rate = self._fail
            if (rate >= 1.0 or self._random.random() < rate) and window.hit():
                if kind == "twilio":
                    body = {"code": 20500, "message": "Internal Server Error", "status": status}
                elif kind == "fcm":
                    name = "UNAVAILABLE" if status == 503 else "INTERNAL"
                    body = _fcm_error(status, name, "The service is unavailable", name)
                else:
                    body = {"error": "server error"}
                return status, body, {}
        return None

    # -- handlers -------------------------------------------------------------------------------

    def _record(
        self,
        kind: str,
        request: web.Request,
        body: bytes,
        status: int,
        *,
        form: dict[str, str] | None = None,
        parsed: Any = None,
        provider_id: str | None = None,
    ) -> None:
        self.counts[kind] += 1
        if 200 <= status < 300:
            self.accepted[kind] += 1
        if not self.record:
            return
        self.requests.append(
            RecordedRequest(
                kind=kind,
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
                form=form,
                json=parsed,
                status=status,
                provider_id=provider_id,
                received_at=time.time(),
            )
        )

    def _respond(
        self,
        kind: str,
        request: web.Request,
        body: bytes,
        status: int,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        **record: Any,
    ) -> web.Response:
        self._record(kind, request, body, status, **record)
        return web.json_response(payload, status=status, headers=headers)

    async def _twilio(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        sid = request.match_info["sid"]
        auth = request.headers.get("Authorization", "")
        try:
            user, _, password = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        except (ValueError, binascii.Error):
            user = password = ""
        if not auth.startswith("Basic ") or user != sid or not password:
            payload = {"code": 20003, "message": "Authenticate", "status": 401}
            return self._respond("twilio", request, body, 401, payload, form=form)
        self.twilio_auth_tokens[sid] = password
        fault = await self._injected("twilio")
        if fault is not None:
            return self._respond("twilio", request, body, fault[0], fault[1], fault[2], form=form)
        to = form.get("To", "")
        if not to:
            payload = {"code": 21604, "message": "A 'To' phone number is required.", "status": 400}
            return self._respond("twilio", request, body, 400, payload, form=form)
        if to in self._invalid_numbers:
            payload = {
                "code": 21211,
                "message": f"The 'To' number {to} is not a valid phone number.",
                "status": 400,
            }
            return self._respond("twilio", request, body, 400, payload, form=form)
        message_sid = "SM" + uuid.uuid4().hex
        payload = {
            "sid": message_sid,
            "account_sid": sid,
            "to": to,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body", ""),
            "status": "queued",
            "num_segments": "1",
            "api_version": "2010-04-01",
        }
        return self._respond("twilio", request, body, 201, payload, form=form, provider_id=message_sid)

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        claims = _jwt_claims(form.get("assertion", ""))
        if form.get("grant_type") != JWT_BEARER or claims is None:
            payload = {"error": "invalid_grant", "error_description": "expected a JWT-bearer assertion"}
            return self._respond("token", request, body, 400, payload, form=form)
        token = "ya29.sink-" + uuid.uuid4().hex
        self.issued_tokens.add(token)
        granted = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        return self._respond("token", request, body, 200, granted, form=form, parsed=claims)

    async def _fcm(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.issued_tokens:
            payload = _fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            return self._respond("fcm", request, body, 401, payload, parsed=parsed)
        fault = await self._injected("fcm")
        if fault is not None:
            return self._respond("fcm", request, body, fault[0], fault[1], fault[2], parsed=parsed)
        message = parsed.get("message") if isinstance(parsed, dict) else None
        token = message.get("token") if isinstance(message, dict) else None
        if not isinstance(token, str) or not token:
            payload = _fcm_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
            )
            return self._respond("fcm", request, body, 400, payload, parsed=parsed)
        if token in self._unregistered:
            payload = _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
            return self._respond("fcm", request, body, 404, payload, parsed=parsed)
        name = f"projects/{request.match_info['project']}/messages/0:{uuid.uuid4().hex}"
        return self._respond("fcm", request, body, 200, {"name": name}, parsed=parsed, provider_id=name)

    async def _json(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            return self._respond("json", request, body, 400, {"error": "body is not JSON"})
        fault = await self._injected("json")
        if fault is not None:
            return self._respond("json", request, body, fault[0], fault[1], fault[2], parsed=parsed)
        recipient = ""
        if isinstance(parsed, dict):
            recipient = str(parsed.get("to") or parsed.get("token") or "")
        if recipient in self._invalid_numbers:
            return self._respond("json", request, body, 400, {"error": "invalid recipient"}, parsed=parsed)
        if recipient in self._unregistered:
            return self._respond("json", request, body, 410, {"error": "token unregistered"}, parsed=parsed)
        message_id = "json-" + uuid.uuid4().hex
        payload = {"id": message_id, "data": {"id": message_id}, "status": "accepted"}
        return self._respond("json", request, body, 200, payload, parsed=parsed, provider_id=message_id)

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        fault = await self._injected("webhook")
        if fault is not None:
            return self._respond("webhook", request, body, fault[0], fault[1], fault[2], parsed=parsed)
        return self._respond("webhook", request, body, 200, {"ok": True}, parsed=parsed)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"counts": dict(self.counts), "accepted": dict(self.accepted)})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    # -- delivery receipts ----------------------------------------------------------------------

    async def send_status_callbacks(
        self, status: str = "delivered", *, error_code: int | None = None, timeout_s: float = 10.0
    ) -> int:
        """POST a Twilio-style status callback for every accepted Twilio message that asked for one.

        Signed with X-Twilio-Signature using the auth token the client authenticated with, as
        Twilio does. Returns how many callbacks were answered with 2xx.
        """
        delivered = 0
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for record in self.of_kind("twilio", accepted_only=True):
                form = record.form or {}
                url = form.get("StatusCallback")
                if not url or record.provider_id is None:
                    continue
                account = record.path.split("/")[3]
                params = {
                    "AccountSid": account,
                    "ApiVersion": "2010-04-01",
                    "From": form.get("From", ""),
                    "MessageSid": record.provider_id,
                    "MessageStatus": status,
                    "SmsSid": record.provider_id,
                    "SmsStatus": status,
                    "To": form.get("To", ""),
                }
                if error_code is not None:
                    params["ErrorCode"] = str(error_code)
                headers = {}
                auth_token = self.twilio_auth_tokens.get(account)
                if auth_token is not None:
                    headers["X-Twilio-Signature"] = twilio_signature(auth_token, url, params)
                try:
                    async with session.post(url, data=params, headers=headers) as response:
                        if 200 <= response.status < 300:
                            delivered += 1
                except (aiohttp.ClientError, TimeoutError):
                    continue
        return delivered
