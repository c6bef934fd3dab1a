"""OAuth2 access tokens for FCM from a service account, via google-auth.

google-auth signs the JWT assertion and exchanges it at the token URI; its transports are
synchronous, so the exchange runs in a thread, once per token lifetime (an hour), shared by all
concurrent sends. A failed refresh is remembered for a few seconds so that a down token endpoint
is not hammered by every message.

The token URI is a tenant-supplied destination: every address it resolves to is checked against
the outbound policy on each connection (not only when settings are written), and redirects are
refused. What the token endpoint answers never becomes a message's reason (tenants read those).
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import google.auth.exceptions
import google.auth.transport
from google.oauth2 import service_account

from optibridge.core.logs import get_logger
from optibridge.core.outbound import DestinationRefusedError, OutboundPolicy

log = get_logger(__name__)

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
REFRESH_MARGIN_S = 300.0  # refresh five minutes before expiry
FAILURE_HOLD_S = 5.0


class TokenError(Exception):
    """No access token could be obtained."""


class _Response(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status, self._headers, self._data = status, headers, data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


def guarded_connect(policy: OutboundPolicy) -> Any:
    """socket.create_connection, connecting only to addresses the policy allows (checked after
    resolving, so a name re-pointed inside between two refreshes is refused too)."""

    def connect(
        address: tuple[str, int], timeout: object = None, source_address: Any = None
    ) -> socket.socket:
        host, port = address
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        reasons = []
        failure: OSError | None = None
        for family, kind, proto, _, sockaddr in infos[:16]:
            reason = policy.check_address(str(sockaddr[0]))
            if reason is not None:
                reasons.append(reason)
                continue
            sock = socket.socket(family, kind, proto)
            try:
                if isinstance(timeout, int | float):  # else http.client's "global default" marker
                    sock.settimeout(timeout)
                if source_address is not None:
                    sock.bind(source_address)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            return sock
        if failure is not None:
            raise failure
        raise DestinationRefusedError(f"destination refused: {host} resolves to {'; '.join(reasons)}")

    return connect


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 30x is answered as the error it is, never followed past the guard


def _guarded_handlers(policy: OutboundPolicy) -> list[urllib.request.BaseHandler]:
    connect = guarded_connect(policy)

    # http.client sets `_create_connection` per instance in __init__: replace it after.
    class GuardedHTTP(http.client.HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = connect

    class GuardedHTTPS(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = connect

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(GuardedHTTP, req)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(GuardedHTTPS, req)

    return [urllib.request.ProxyHandler({}), HttpHandler(), HttpsHandler(), _NoRedirect()]


class UrllibRequest(google.auth.transport.Request):
    """google-auth's transport interface over the standard library (no `requests` dependency).

    Environment proxies are ignored, as in the aiohttp sessions; connections go through `policy`.
    """

    def __init__(self, timeout: float = 10.0, policy: OutboundPolicy | None = None) -> None:
        self._policy = policy if policy is not None else OutboundPolicy()
        self._opener = urllib.request.build_opener(*_guarded_handlers(self._policy))
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        if not url.startswith(("http://", "https://")):
            raise google.auth.exceptions.TransportError("refusing a non-HTTP token URI")  # type: ignore[no-untyped-call]
        reason = self._policy.check_url(url)  # a literal IP never reaches the resolver check
        if reason is not None:
            raise google.auth.exceptions.TransportError(f"destination refused: {reason}")  # type: ignore[no-untyped-call]
        request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)  # noqa: S310
        try:
            with self._opener.open(request, timeout=timeout or self._timeout) as response:
                return _Response(response.status, dict(response.headers), response.read(1 << 20))
        except urllib.error.HTTPError as exc:  # google-auth reads the error body itself
            return _Response(exc.code, dict(exc.headers or {}), exc.read(1 << 16))
        except DestinationRefusedError as exc:
            raise google.auth.exceptions.TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(getattr(exc, "reason", None), DestinationRefusedError):
                raise google.auth.exceptions.TransportError(str(exc.reason)) from exc  # type: ignore[attr-defined,no-untyped-call]
            raise google.auth.exceptions.TransportError(f"no answer: {type(exc).__name__}") from exc  # type: ignore[no-untyped-call]


class ServiceAccountTokens:
    """Cached access tokens for one service account."""

    def __init__(
        self,
        info: Mapping[str, Any],
        *,
        token_uri: str | None = None,
        timeout: float = 10.0,
        policy: OutboundPolicy | None = None,
    ) -> None:
        info = dict(info)
        if token_uri:
            info["token_uri"] = token_uri
        info.setdefault("token_uri", "https://oauth2.googleapis.com/token")
        try:
            self._credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[FCM_SCOPE]
            )
        except (ValueError, KeyError) as exc:
            raise ValueError(f"invalid service-account credentials: {exc}") from None
        self._transport = UrllibRequest(timeout, policy)
        self._token: str | None = None
        self._expires_at = 0.0
        self._failed_until = 0.0
        self._failure = ""
        self._lock = asyncio.Lock()
        self.refreshes = 0

    async def token(self) -> str:
        token = self._token
        if token is not None and time.time() < self._expires_at - REFRESH_MARGIN_S:
            return token
        async with self._lock:
            now = time.time()
            if self._token is not None and now < self._expires_at - REFRESH_MARGIN_S:
                return self._token
            if now < self._failed_until:
                raise TokenError(self._failure)
            try:
                await asyncio.to_thread(self._credentials.refresh, self._transport)
            except google.auth.exceptions.GoogleAuthError as exc:
                # google-auth's text quotes the token endpoint's answer: logged by length, and the
                # message's reason (which the tenant reads) says only what kind of failure it was.
                self._failure = _failure_summary(exc)
                log.warning("fcm token refresh failed", error=type(exc).__name__, detail_chars=len(str(exc)))
                self._failed_until = time.time() + FAILURE_HOLD_S
                raise TokenError(self._failure) from exc
            self.refreshes += 1
            expiry = self._credentials.expiry  # naive UTC
            self._expires_at = (
                expiry.replace(tzinfo=UTC).timestamp() if expiry is not None else time.time() + 3600
            )
            self._token = str(self._credentials.token)
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget a token the server refused (revoked, or clocks disagree), once."""
        if self._token == token:
            self._token = None


def _failure_summary(exc: BaseException) -> str:
    text = str(exc)
    if "destination refused" in text:
        return "OAuth token refresh failed: token URI destination refused by the outbound policy"
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return "OAuth token refresh failed: the token endpoint issued no token"
    return f"OAuth token refresh failed: {type(exc).__name__}"
