"""Event webhooks of the e-mail and SMS providers users already have.

    POST /r/ses/{tenant}/{channel}       SNS notifications of SES events (JSON)
    POST /r/sendgrid/{tenant}/{channel}  SendGrid signed Event Webhook (JSON array)
    POST /r/mailgun/{tenant}/{channel}   Mailgun webhooks (JSON); timestamp within 1 h, token used once
    POST /r/postmark/{tenant}/{channel}  Postmark webhooks (JSON), basic auth in the URL
    POST /r/vonage/{tenant}/{channel}    Vonage delivery receipts (form or JSON; GET: query)
    POST /r/plivo/{tenant}/{channel}     Plivo status callbacks (form), ?message_id=<id>

`channel` is the Optimove ChannelID of the tenant's channel whose provider settings hold the
verification key (one provider, or any entry of that type in a failover list). The operator
configures this URL in the provider's console (Vonage and Plivo: the channel's
`status_callback_url`).

In this order: a body over 1 MiB (16 KiB for Vonage and Plivo) -> 413, read in full before the
database is asked anything (the service's body deadline, web/limits.py, bounds the time); a tenant
or channel we do not have, or a channel without that provider -> 404; a missing or wrong signature
(or a provider with no verification key configured, or an SNS topic the channel does not name) ->
403 (Postmark: 401); a body we cannot read -> 400.
Nothing is recorded unless the signature holds. Events are recorded for the tenant in the path
only (a message of another tenant matches nothing), de-duplicated by the provider's event id:
a replay answers 200 and inserts nothing.

SES: the SNS signing certificate (a path ending in .pem) is fetched only from under the channel's
SNS base URL (https://sns.<region>.amazonaws.com unless set), through the operator's outbound
policy, bounded (5 s, 64 KiB, 4 fetches at once, no redirects), cached by URL (at most 32), and a
URL that failed is not fetched again (1,024 remembered). A SubscriptionConfirmation from an allowed topic is
confirmed by a GET of its SubscribeURL, which must sit under the same base URL.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from optibridge.channels.provider_settings import (
    MailgunSettings,
    PlivoSettings,
    PostmarkSettings,
    SendgridSettings,
    SesSettings,
    VonageSettings,
    load_sendgrid_public_key,
)
from optibridge.core.errors import NotFoundError
from optibridge.core.feedback_settings import feedback_settings
from optibridge.core.logs import get_logger
from optibridge.core.outbound import OutboundPolicy
from optibridge.feedback import provider_receipts as pr
from optibridge.feedback.events import Event, record_events
from optibridge.feedback.receipt_parsing import InvalidReceipt, form_pairs
from optibridge.runtime import Runtime
from optibridge.store import tenants as tenant_store

log = get_logger(__name__)

Clock = Callable[[], datetime]
MAX_BODY = 1024 * 1024
SMS_RECEIPT_BYTES = 16 * 1024  # a Vonage or Plivo receipt is one message's status, a few fields
MAX_CERT = 64 * 1024
CERT_CACHE = 32
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CHANNEL = re.compile(r"^[0-9]{1,9}$")
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
PLIVO_SIGNATURE = "X-Plivo-Signature-V3"
PLIVO_NONCE = "X-Plivo-Signature-V3-Nonce"


class Refused(Exception):
    """A receipt not accepted, answered with this status (no signature, bad credentials, ...)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


S = TypeVar("S", bound=BaseModel)
# A provider's part of an endpoint: verify the receipt, then parse it into our events (or raise
# Refused / InvalidReceipt). `found`: the channel's settings entries of that provider type.
Reader = Callable[[Request, bytes, list[S], str], Awaitable[list[Event]]]


def form(body: bytes) -> dict[str, str]:
    return dict(form_pairs(body))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _reply(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def _read_body(request: Request, limit: int = MAX_BODY) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _entries(settings: Mapping[str, Any], provider: str, model: type[S]) -> list[S]:
    """The channel's validated settings of this provider type (one, or each of a failover list)."""
    listed = settings.get("providers")
    raw = listed if isinstance(listed, list) else [settings]
    found = []
    for entry in raw:
        if isinstance(entry, Mapping) and entry.get("type") == provider:
            try:
                found.append(model.model_validate(dict(entry)))
            except ValidationError:
                continue  # stored settings that no longer validate verify nothing
    return found


class CertificateFetcher:
    """SNS signing certificates: fetched through the outbound policy, bounded, cached by URL."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._failed: OrderedDict[str, None] = OrderedDict()
        # Unsigned requests can name certificate URLs (under the allowed base): at most this many
        # fetches at once, and a URL that failed is not fetched again (bounded memory of both).
        self._slots = asyncio.Semaphore(4)

    async def get(self, url: str) -> bytes | None:
        cached = self._cache.get(url)
        if cached is not None:
            self._cache.move_to_end(url)
            return cached
        if url in self._failed or not urlsplit(url).path.endswith(".pem"):
            return None
        body = await self.fetch(url, MAX_CERT)
        if body is None:
            self._failed[url] = None
            while len(self._failed) > 1024:
                self._failed.popitem(last=False)
            return None
        self._cache[url] = body
        while len(self._cache) > CERT_CACHE:
            self._cache.popitem(last=False)
        return body

    async def fetch(self, url: str, limit: int) -> bytes | None:
        if self._policy.check_url(url) is not None:
            return None
        async with self._slots:
            return await self._fetch(url, limit)

    async def _fetch(self, url: str, limit: int) -> bytes | None:
        connector = aiohttp.TCPConnector(resolver=self._policy.resolver(), use_dns_cache=False)
        timeout = aiohttp.ClientTimeout(total=5.0)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
                session.get(url, allow_redirects=False) as response,
            ):
                if response.status != 200:
                    return None
                body = await response.content.read(limit + 1)
                return body if len(body) <= limit else None
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None


class MailgunTokens:
    """Tokens of accepted Mailgun webhooks, with the event each was for (this process; bounded).

    A token seen again for the same event is a retry or a replay (recorded once by the dedupe
    key); for another event it is a signature moved onto forged data, refused.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def admit(self, token: str, event_id: str) -> bool:
        known = self._seen.get(token)
        if known is not None:
            return known == event_id
        self._seen[token] = event_id
        while len(self._seen) > self._limit:  # the oldest are past the freshness window first
            self._seen.popitem(last=False)
        return True


def router(
    runtime: Runtime,
    *,
    clock: Clock = _utcnow,
    certificates: CertificateFetcher | None = None,
) -> APIRouter:
    max_events = feedback_settings(runtime.settings).max_receipt_events
    public_url = runtime.settings.public_url
    certs = certificates or CertificateFetcher(runtime.settings.outbound_policy)
    mailgun_tokens = MailgunTokens()
    api = APIRouter(tags=["provider receipts"])

    async def entries(tenant: str, channel: str, provider: str, model: type[S]) -> list[S] | None:
        if not _TENANT.match(tenant) or not _CHANNEL.match(channel):
            return None
        try:
            async with runtime.pool.connection() as conn:
                found = await tenant_store.channel_provider_settings(conn, runtime.box, tenant, int(channel))
        except NotFoundError:
            return None
        return _entries(found, provider, model) or None

    async def record(events: list[Event], provider: str, tenant: str) -> JSONResponse:
        recorded = 0
        if events:
            async with runtime.pool.connection() as conn:
                recorded = await record_events(conn, events)
        log.info(
            "provider receipts", provider=provider, tenant=tenant, received=len(events), recorded=recorded
        )
        return JSONResponse({"received": len(events), "recorded": recorded})

    def called_url(request: Request) -> str:
        """The URL the provider called: the public URL + path + query (a reverse proxy rewrites
        the Host we see); without a public URL (tests, local runs), the request's own."""
        if not public_url:
            return str(request.url)
        query = request.url.query
        return f"{public_url.rstrip('/')}{request.url.path}" + (f"?{query}" if query else "")

    def json_body(body: bytes) -> Any:
        try:
            return json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise InvalidReceipt("body is not valid JSON") from None

    async def receive(
        request: Request,
        tenant: str,
        channel: str,
        provider: str,
        model: type[S],
        read: Reader[S],
        limit: int = MAX_BODY,
    ) -> Response:
        """What every provider's endpoint does around its own `read` (verify, then parse): the body
        in (bounded) before the database is asked anything; 404, 413 and 400 alike for all."""
        body = await _read_body(request, limit)
        if body is None:
            return _reply(413, "body too large")
        found = await entries(tenant, channel, provider, model)
        if found is None:
            return _reply(404, "not found")
        try:
            events = await read(request, body, found, tenant)
        except Refused as exc:
            if exc.status in (401, 403):
                log.warning("provider receipt refused", provider=provider, tenant=tenant, reason=exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=exc.headers)
        except InvalidReceipt as exc:
            return _reply(400, str(exc)[:200])
        except RecursionError:
            return _reply(400, "body is nested too deeply")
        return await record(events, provider, tenant)

    async def read_ses(request: Request, body: bytes, found: list[SesSettings], tenant: str) -> list[Event]:
        message = json_body(body)
        if not isinstance(message, dict):
            raise InvalidReceipt("SNS message must be a JSON object")
        pr.sns_string_to_sign(message)  # the fields a signature covers are all there
        now = clock()
        allowed = [s for s in found if message.get("TopicArn") in s.sns_topic_arns]
        bases = [s.effective_cert_base_url for s in allowed]
        cert_url = message.get("SigningCertURL")
        if not any(pr.sns_cert_url_allowed(cert_url, base) for base in bases):
            raise Refused(403, "SNS topic or SigningCertURL not allowed")
        cert = await certs.get(str(cert_url))
        if cert is None or not pr.sns_signature_valid(message, cert, now):
            raise Refused(403, "bad SNS signature")
        if message["Type"] == "SubscriptionConfirmation":
            subscribe = message.get("SubscribeURL")
            if any(pr.sns_cert_url_allowed(subscribe, base) for base in bases):
                confirmed = await certs.fetch(str(subscribe), MAX_CERT)
                log.info("sns subscription confirmed", tenant=tenant, ok=confirmed is not None)
            return []
        if message["Type"] != "Notification":
            return []
        return pr.ses_events(json_body(message["Message"].encode()), tenant, now)

    async def read_sendgrid(
        request: Request, body: bytes, found: list[SendgridSettings], tenant: str
    ) -> list[Event]:
        timestamp = request.headers.get(SENDGRID_TIMESTAMP)
        signature = request.headers.get(SENDGRID_SIGNATURE)
        keys = [load_sendgrid_public_key(s.webhook_public_key) for s in found if s.webhook_public_key]
        if not any(pr.sendgrid_signature_valid(key, timestamp, body, signature) for key in keys):
            raise Refused(403, "bad event webhook signature")
        return pr.sendgrid_events(json_body(body), tenant, clock(), max_events=max_events)

    async def read_mailgun(
        request: Request, body: bytes, found: list[MailgunSettings], tenant: str
    ) -> list[Event]:
        document = json_body(body)
        signature = document.get("signature") if isinstance(document, dict) else None
        secrets = [s.webhook_signing_secret for s in found if s.webhook_signing_secret]
        if not any(pr.mailgun_signature_valid(secret, signature) for secret in secrets):
            raise Refused(403, "bad webhook signature")
        now = clock()
        used = pr.mailgun_token_and_event(document)
        if not pr.mailgun_fresh(signature, now) or used is None or not mailgun_tokens.admit(*used):
            raise Refused(403, "stale or reused webhook signature")
        return pr.mailgun_events(document, tenant, now)

    async def read_postmark(
        request: Request, body: bytes, found: list[PostmarkSettings], tenant: str
    ) -> list[Event]:
        header = request.headers.get("authorization")
        pairs = [(s.webhook_username, s.webhook_password) for s in found if s.webhook_username]
        if not any(pr.basic_auth_valid(header, u or "", p or "") for u, p in pairs):
            raise Refused(401, "bad credentials", {"WWW-Authenticate": "Basic"})
        return pr.postmark_events(json_body(body), tenant, clock())

    async def read_vonage(
        request: Request, body: bytes, found: list[VonageSettings], tenant: str
    ) -> list[Event]:
        params = form_or_json(request, body)
        keys = [(s.signature_secret, s.signature_method) for s in found if s.signature_secret]
        if not any(pr.vonage_signature_valid(params, secret or "", method) for secret, method in keys):
            raise Refused(403, "bad sig")
        return pr.vonage_events(params, tenant, clock())

    async def read_plivo(
        request: Request, body: bytes, found: list[PlivoSettings], tenant: str
    ) -> list[Event]:
        try:
            message_id = uuid.UUID(request.query_params.get("message_id", ""))
        except ValueError:
            raise Refused(404, "not found") from None
        params = form(body)
        signed = pr.plivo_signature_valid(
            [s.auth_token for s in found],
            called_url(request),
            params,
            request.headers.get(PLIVO_NONCE),
            request.headers.get(PLIVO_SIGNATURE),
        )
        if not signed:
            raise Refused(403, "bad X-Plivo-Signature-V3")
        return pr.plivo_events(params, message_id, tenant, clock())

    def form_or_json(request: Request, body: bytes) -> dict[str, str]:
        if request.method == "GET":
            return form(request.url.query.encode())  # over 100 fields: 400, as for a POST
        if request.headers.get("content-type", "").startswith("application/json"):
            document = json_body(body)
            if not isinstance(document, dict) or len(document) > 100:
                raise InvalidReceipt("receipt must be a JSON object")
            return {str(k): str(v) for k, v in document.items() if isinstance(v, (str, int, float))}
        return form(body)

    def route(
        provider: str,
        model: type[S],
        read: Reader[S],
        limit: int = MAX_BODY,
        methods: tuple[str, ...] = ("POST",),
    ) -> None:
        async def endpoint(request: Request, tenant: str, channel: str) -> Response:
            return await receive(request, tenant, channel, provider, model, read, limit)

        path = f"/r/{provider}/{{tenant}}/{{channel}}"
        api.add_api_route(path, endpoint, methods=list(methods), name=provider, include_in_schema=False)

    route("ses", SesSettings, read_ses)
    route("sendgrid", SendgridSettings, read_sendgrid)
    route("mailgun", MailgunSettings, read_mailgun)
    route("postmark", PostmarkSettings, read_postmark)
    route("vonage", VonageSettings, read_vonage, SMS_RECEIPT_BYTES, ("GET", "POST"))  # Vonage may GET
    route("plivo", PlivoSettings, read_plivo, SMS_RECEIPT_BYTES)
    return api
