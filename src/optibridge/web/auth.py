"""API keys: make, store (hashed), look up, revoke; and who a request is (`Principal`).

A key is `obk_` + 256 random bits (base64url). Only its SHA-256 is stored; a request's key is
hashed and found by an index lookup on the hash, so no secret is ever compared byte by byte in
Python and a database dump gives no usable key. A key belongs to one tenant (it sees and changes
only that tenant) or to none (an admin key: every tenant, and tenant creation and removal).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.store import apikeys, tenants
from optibridge.store.apikeys import Conn
from optibridge.store.apikeys import StoredKey as StoredKey  # re-exported: the CLI names it

KEY_PREFIX = "obk_"
MAX_KEY_LENGTH = 200
SHOWN_PREFIX = 12  # "obk_" and 8 characters: enough to tell keys apart, far too few to guess one
# Writing last_used_at on every request would turn every read into a write; once a minute is enough.
LAST_USED_EVERY_S = 60


class ApiError(Exception):
    """An error answered as `{"error": ..., "detail": ...}` with its status (and headers)."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def looks_like_key(key: str) -> bool:
    return key.startswith(KEY_PREFIX) and 8 < len(key) <= MAX_KEY_LENGTH and key.isascii()


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key, admin (tenant_id None) or scoped to one tenant."""

    key_id: int
    name: str
    tenant_id: str | None
    key_hash: bytes

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def may_see(self, tenant_id: str) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id

    def require_tenant(self, tenant_id: str) -> None:
        if not self.may_see(tenant_id):
            raise ApiError(
                403,
                "forbidden",
                f"this API key belongs to tenant {self.tenant_id!r} and cannot act on tenant {tenant_id!r}",
            )

    def require_admin(self, action: str) -> None:
        if not self.is_admin:
            raise ApiError(403, "forbidden", f"{action} needs an admin API key (one with no tenant)")


async def create_key(conn: Conn, name: str, tenant_id: str | None) -> tuple[StoredKey, str]:
    """Store a new key; returns it with the clear key, which is never available again."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ConflictError("a key name is 1 to 200 characters")
    if tenant_id is not None and not await tenants.exists(conn, tenant_id):
        raise NotFoundError(f"no tenant {tenant_id!r}")
    key = new_key()
    return await apikeys.insert(conn, name, tenant_id, hash_key(key), key[:SHOWN_PREFIX]), key


async def list_keys(conn: Conn, *, include_revoked: bool = False) -> list[StoredKey]:
    return await apikeys.list_keys(conn, include_revoked=include_revoked)


async def revoke_key(conn: Conn, key_id: int) -> bool:
    """Revoke a key at once; False if it was already revoked. NotFoundError if there is no such key."""
    stored = await apikeys.get(conn, key_id)
    if stored is None:
        raise NotFoundError(f"no API key with id {key_id}")
    if stored.revoked_at is not None:
        return False
    await apikeys.revoke(conn, key_id)
    return True


async def principal_for_hash(conn: Conn, key_hash: bytes) -> Principal | None:
    """The live (not revoked) key with this hash, recording its use at most once a minute."""
    found = await apikeys.live_by_hash(conn, key_hash, stale_after_s=LAST_USED_EVERY_S)
    if found is None:
        return None
    if found.stale:
        await apikeys.touch(conn, found.id)
    return Principal(key_id=found.id, name=found.name, tenant_id=found.tenant_id, key_hash=found.key_hash)


def bearer_key(authorization: str | None) -> str:
    """The key of an `Authorization: Bearer obk_...` header (not yet checked), or ApiError 401."""
    if not authorization:
        raise unauthorized("missing API key: send 'Authorization: Bearer obk_...'")
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise unauthorized("the Authorization header must be 'Bearer obk_...'")
    if not looks_like_key(key):
        raise unauthorized("invalid API key")
    return key


async def authenticate(conn: Conn, authorization: str | None) -> Principal:
    """The principal of an `Authorization: Bearer obk_...` header, or ApiError 401 saying why not."""
    found = await principal_for_hash(conn, hash_key(bearer_key(authorization)))
    if found is None:
        raise unauthorized("invalid or revoked API key")
    return found
