"""Browser sessions for the dashboard: a signed cookie that names an API key by its hash.

The operator pastes an API key once; the cookie then holds `{key hash, nonce, issued}` signed with
HMAC-SHA256 under a server secret (kept encrypted in the `settings` table, so every `serve` machine
shares it). Each request re-checks the key: revoking it ends its sessions at once. The cookie is
HttpOnly, SameSite=Strict, and Secure when the dashboard is served over HTTPS. State-changing
requests are POSTs that must also carry the session's CSRF token (an HMAC of its nonce).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from optibridge.core.secretbox import SecretBox
from optibridge.store import sessions

Conn = psycopg.AsyncConnection[dict[str, Any]]
SECRET_SETTING = "dashboard_session_secret"  # noqa: S105 (a settings row name, not a secret)
SESSION_COOKIE = "optibridge_session"
LOGIN_COOKIE = "optibridge_login"
MAX_AGE_S = 12 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    key_hash: bytes
    nonce: str
    issued: int


class SessionSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret must be at least 32 bytes")
        self._secret = secret

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def issue(self, key_hash: bytes, now: int) -> str:
        payload = json.dumps({"k": key_hash.hex(), "n": secrets.token_urlsafe(16), "t": now}).encode()
        return f"{_b64(payload)}.{_b64(self._mac('session', payload))}"

    def verify(self, value: str | None, now: int) -> Session | None:
        if not value or len(value) > 1000 or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (ValueError, binascii.Error):
            return None
        if not hmac.compare_digest(given, self._mac("session", payload)):
            return None
        try:
            data = json.loads(payload)
            session = Session(bytes.fromhex(data["k"]), str(data["n"]), int(data["t"]))
        except (ValueError, KeyError, TypeError):
            return None
        if not 0 <= now - session.issued <= MAX_AGE_S:
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac("csrf", session.nonce.encode()))

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token).encode(), self.csrf_token(session).encode())


async def load_secret(conn: Conn, box: SecretBox) -> bytes:
    """The signing secret, made on first use; stored encrypted, shared by every process."""
    stored = await sessions.setting_once(conn, SECRET_SETTING, box.encrypt(secrets.token_bytes(32)))
    return box.decrypt(stored)
