"""OAuth2 access tokens for FCM from a service account, via google-auth.

google-auth signs the JWT assertion and exchanges it at the token URI; its transports are
synchronous, so the exchange runs in a thread, once per token lifetime (an hour), shared by all
concurrent sends. A failed refresh is remembered for a few seconds so that a down token endpoint
is not hammered by every message.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import google.auth.exceptions
import google.auth.transport
from google.oauth2 import service_account

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


class UrllibRequest(google.auth.transport.Request):
    """google-auth's transport interface over the standard library (no `requests` dependency).

    Environment proxies are ignored, as in the aiohttp sessions.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
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
            raise google.auth.exceptions.TransportError(f"refusing non-HTTP token URI {url!r}")  # type: ignore[no-untyped-call]
        request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)  # noqa: S310
        try:
            with self._opener.open(request, timeout=timeout or self._timeout) as response:
                return _Response(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:  # google-auth reads the error body itself
            return _Response(exc.code, dict(exc.headers or {}), exc.read())
        except (urllib.error.URLError, OSError) as exc:
            raise google.auth.exceptions.TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]


class ServiceAccountTokens:
    """Cached access tokens for one service account."""

    def __init__(
        self, info: Mapping[str, Any], *, token_uri: str | None = None, timeout: float = 10.0
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
        self._transport = UrllibRequest(timeout)
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
                self._failure = f"OAuth token refresh failed: {exc}"
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
