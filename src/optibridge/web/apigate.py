"""The admin API's front door: throttle, then authenticate, before the body is read.

FastAPI reads and parses a request's body before it resolves the auth dependency, so a request with
no key could make the server take a whole body in (a 1 GB PATCH once grew it by 1.6 GB) before its
401. This ASGI middleware runs first for every /api/v1 request:

1. a client IP over the failed-auth limit (web/ratelimit.py) gets 429 with Retry-After, with no
   database lookup, unless its key already authenticated in this process;
2. a missing, malformed, unknown or revoked key gets 401 (and counts as a failure), the body unread
   (the response closes the connection: see web/limits.py);
3. otherwise the key's principal is put in the ASGI scope, where `current_principal`
   (web/api/common.py) takes it: the key is looked up once, and the database connection is returned
   before the body is read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from optibridge.core.logs import get_logger
from optibridge.runtime import Runtime
from optibridge.web.auth import ApiError, Principal, bearer_key, hash_key, principal_for_hash, unauthorized
from optibridge.web.limits import error_response, send_all
from optibridge.web.ratelimit import FailureLimiter, client_ip

log = get_logger(__name__)

PRINCIPAL_SCOPE_KEY = "optibridge.principal"


def principal_in(scope: Scope) -> Principal | None:
    found = scope.get(PRINCIPAL_SCOPE_KEY)
    return found if isinstance(found, Principal) else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class ApiAuthGate:
    def __init__(self, app: ASGIApp, runtime: Runtime, limiter: FailureLimiter, prefix: str) -> None:
        self.app = app
        self.runtime = runtime
        self.limiter = limiter
        self.prefix = prefix

    def _guards(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._guards(scope["path"]):
            await self.app(scope, receive, send)
            return
        client = client_ip(scope.get("client"))
        try:
            key: str | None = bearer_key(_header(scope, b"authorization"))
            refusal: ApiError | None = None
        except ApiError as exc:
            key, refusal = None, exc
        key_hash = hash_key(key) if key is not None else None
        wait = self.limiter.refuse(client, key_hash)
        if wait is not None:
            detail = f"too many failed API key checks from this address; try again in {wait} s"
            await send_all(send, error_response(429, "too many requests", detail, {"Retry-After": str(wait)}))
            return
        principal = None
        if key_hash is not None:
            async with self.runtime.pool.connection() as conn:
                principal = await principal_for_hash(conn, key_hash)
            if principal is None:
                refusal = unauthorized("invalid or revoked API key")
        if principal is None:
            assert refusal is not None
            self.limiter.failed(client)
            if self.limiter.retry_after(client) is not None:
                log.warning("api: failed-auth limit reached", client=client, path=scope["path"])
            await send_all(send, error_response(401, refusal.error, refusal.detail, refusal.headers))
            return
        assert key_hash is not None
        self.limiter.succeeded(key_hash)
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await self.app(scope, receive, send)
