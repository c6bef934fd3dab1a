"""The tracking endpoints recipients' mail clients and browsers call.

    GET  /t/o/{token}   open pixel: a 1x1 GIF, never cached
    GET  /t/c/{token}   click: 302 to the URL inside the signed token
    GET  /t/u/{token}   unsubscribe confirmation page (a form that POSTs); records nothing
    POST /t/u/{token}   RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click): records

A token that does not verify, or is of another kind, is a 404 and records nothing. HEAD requests
(link checkers) get the same answer and record nothing. GET never unsubscribes: mail security
scanners fetch every link in a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request, Response

from optibridge.core.feedback_settings import FeedbackSettings, feedback_settings
from optibridge.core.logs import get_logger
from optibridge.feedback.bots import is_suspect
from optibridge.feedback.events import Event, EventKind, Source, record_events
from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.recorder import BufferedRecorder, DirectRecorder, Recorder
from optibridge.feedback.tokens import InvalidToken, Token, TokenKind, decode
from optibridge.retention.unsubscribe import unsubscribe_purged
from optibridge.runtime import Runtime

log = get_logger(__name__)

Clock = Callable[[], datetime]

# The smallest transparent GIF (43 bytes).
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
    "Pragma": "no-cache",
    "Expires": "0",
}
PRIVATE_PAGE = {
    **NO_CACHE,
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
MAX_UNSUBSCRIBE_BODY = 8 * 1024
_MULTIPART_ONE_CLICK = re.compile(
    rb'name="?List-Unsubscribe"?[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n[ \t]*One-Click[ \t]*\r?\n', re.IGNORECASE
)


def _not_found() -> Response:
    return Response(b"not found", status_code=404, media_type="text/plain", headers=NO_CACHE)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def is_one_click_body(content_type: str, body: bytes) -> bool:
    """RFC 8058: the POST body is `List-Unsubscribe=One-Click`, urlencoded or multipart."""
    if b"One-Click" not in body:
        return False
    if content_type.lower().startswith("multipart/form-data"):
        return _MULTIPART_ONE_CLICK.search(body) is not None
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
    except UnicodeDecodeError:
        return False
    return "One-Click" in fields.get("List-Unsubscribe", [])


def _page(title: str, body_html: str, status: int = 200) -> Response:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
        "button{font-size:1rem;padding:.6rem 1.2rem}</style></head>"
        f"<body>{body_html}</body></html>"
    )
    return Response(text, status_code=status, media_type="text/html; charset=utf-8", headers=PRIVATE_PAGE)


CONFIRM_PAGE = (
    "<h1>Unsubscribe</h1><p>Stop receiving these messages?</p>"
    "<form method='post'><input type='hidden' name='List-Unsubscribe' value='One-Click'>"
    "<button type='submit'>Unsubscribe</button></form>"
)
DONE_PAGE = "<h1>You are unsubscribed</h1><p>You will not receive these messages any more.</p>"


def click_dedupe_key(token: Token) -> str:
    url_hash = hashlib.sha256((token.url or "").encode()).hexdigest()[:16]
    return f"click:{token.message_id}:{url_hash}"


def make_recorder(runtime: Runtime, settings: FeedbackSettings) -> Recorder:
    if settings.flush_interval_ms == 0:
        return DirectRecorder(runtime.pool)
    return BufferedRecorder(
        runtime.pool, interval_s=settings.flush_interval_ms / 1000, max_events=settings.buffer_max_events
    )


def router(
    runtime: Runtime,
    *,
    settings: FeedbackSettings | None = None,
    keys: TrackingKeys | None = None,
    clock: Clock = _utcnow,
    recorder: Recorder | None = None,
) -> APIRouter:
    """The tracking routes; the open/click buffer is flushed when the application stops.

    Pass `recorder` to keep a handle on it (the demo flushes it before an on-demand report push).
    """
    cfg = settings or feedback_settings(runtime.settings)
    tracking_keys = keys or TrackingKeys.from_settings(runtime.settings)
    recorder = recorder if recorder is not None else make_recorder(runtime, cfg)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            await recorder.aclose()

    api = APIRouter(tags=["tracking"], lifespan=lifespan)

    def verified(token: str, kind: TokenKind) -> Token | None:
        # Routes take the rest of the path (`{token:path}`): a trailing slash some link rewriter
        # added is dropped here, and anything else with a slash fails to decode (404), instead of
        # the framework's redirect to the path without the slash.
        try:
            return decode(tracking_keys, token.removesuffix("/"), kind)
        except InvalidToken:
            return None

    async def record_hit(request: Request, token: Token, kind: EventKind, key: str) -> None:
        now = clock()
        suspect = is_suspect(request.headers.get("user-agent"), token.issued_at, now, cfg.min_human_delay_s)
        event = Event(
            message_id=token.message_id,
            kind=kind,
            source=Source.TRACKING,
            # A suspect hit gets its own key, so a scanner's prefetch never hides the person's open.
            dedupe_key=f"{key}:suspect" if suspect else key,
            occurred_at=now,
            suspect=suspect,
            url=token.url,
        )
        await recorder.record(event)

    @api.api_route("/t/o/{token:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def open_pixel(request: Request, token: str) -> Response:
        parsed = verified(token, TokenKind.OPEN)
        if parsed is None:
            return _not_found()
        if request.method == "GET":
            await record_hit(request, parsed, EventKind.OPENED, f"open:{parsed.message_id}")
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    @api.api_route("/t/c/{token:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def click(request: Request, token: str) -> Response:
        parsed = verified(token, TokenKind.CLICK)
        if parsed is None or parsed.url is None:
            return _not_found()
        if request.method == "GET":
            await record_hit(request, parsed, EventKind.CLICKED, click_dedupe_key(parsed))
        return Response(
            status_code=302, headers={"Location": parsed.url, "Referrer-Policy": "no-referrer", **NO_CACHE}
        )

    @api.get("/t/u/{token:path}", include_in_schema=False)
    async def unsubscribe_page(token: str) -> Response:
        if verified(token, TokenKind.UNSUBSCRIBE) is None:
            return _not_found()
        return _page("Unsubscribe", CONFIRM_PAGE)

    @api.post("/t/u/{token:path}", include_in_schema=False)
    async def unsubscribe(request: Request, token: str) -> Response:
        parsed = verified(token, TokenKind.UNSUBSCRIBE)
        if parsed is None:
            return _not_found()
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_UNSUBSCRIBE_BODY:
                return _page("Unsubscribe", "<p>Request too large.</p>", 413)
        if not is_one_click_body(request.headers.get("content-type", ""), body):
            return _page("Unsubscribe", "<p>Expected List-Unsubscribe=One-Click.</p>", 400)
        event = Event(
            message_id=parsed.message_id,
            kind=EventKind.UNSUBSCRIBED,
            source=Source.TRACKING,
            dedupe_key=f"unsub:{parsed.message_id}",
            occurred_at=clock(),
        )
        # Written before answering: a 200 to a one-click POST promises the unsubscribe is done.
        async with runtime.pool.connection() as conn:
            recorded = await record_events(conn, [event])
        if not recorded:
            # Repeated, or the message row was purged: then its kept recipient is suppressed
            # (retention.unsubscribe; nothing if that too has expired or never existed).
            purged = await unsubscribe_purged(
                runtime.pool,
                parsed.message_id,
                clock(),
                timedelta(days=runtime.settings.unsubscribe_keep_days),
            )
            log.info(
                "unsubscribe: nothing new recorded", message=str(parsed.message_id), kept_recipient=purged
            )
        return _page("Unsubscribed", DONE_PAGE)

    return api
