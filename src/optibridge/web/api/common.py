"""What every admin API router shares: errors, auth dependency, pagination, tenant scoping."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Generic, TypeVar

import psycopg
from fastapi import Depends, Path, Query, Request, Response
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from pydantic import BaseModel, Field

from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.runtime import Runtime
from optibridge.store import tenants as tenant_store
from optibridge.web.apigate import principal_in
from optibridge.web.auth import ApiError, Principal, authenticate

T = TypeVar("T")
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MAX_INT = 2**31 - 1
MAX_BIGINT = 2**63 - 1


TenantId = Annotated[str, Path(pattern=TENANT_PATTERN, description="Tenant id", examples=["acme"])]
ChannelName = Annotated[str, Path(pattern=NAME_PATTERN, description="Channel name", examples=["email"])]
CampaignId = Annotated[int, Path(ge=0, le=MAX_BIGINT, description="Optimove's CampaignID", examples=[42])]
TemplateId = Annotated[int, Path(ge=1, le=MAX_INT, description="Optimove's TemplateID", examples=[7])]


class ErrorBody(BaseModel):
    """Every error this API answers itself (401, 403, 404, 409, 413, 422, 501)."""

    error: str = Field(description="Short, stable error kind, e.g. 'unauthorized', 'not found'")
    detail: str = Field(description="What went wrong, for a person to read")
    field: str | None = Field(default=None, description="The request field at fault, when one is")
    part: str | None = Field(default=None, description="Template part at fault (invalid template)")
    line: int | None = Field(default=None, description="Line in that part (invalid template)")
    reason: str | None = Field(default=None, description="Parser's reason (invalid template)")


class _ValidationItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """FastAPI's own shape for a request that does not match the schema."""

    detail: list[_ValidationItem]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


Responses = dict[int | str, dict[str, Any]]


class ParseErrorBody(BaseModel):
    """FastAPI's answer to a body that is not JSON at all."""

    detail: str


# Documented on every admin API operation.
COMMON_RESPONSES: Responses = {
    400: {"model": ParseErrorBody, "description": "The body is not valid JSON"},
    401: _error("Missing, invalid or revoked API key"),
    403: _error("The key may not act on this tenant, or the action needs an admin key"),
    # Answered before the route runs (web/limits.py, web/apigate.py): see docs/security.md.
    408: _error("The request body did not arrive within the route's time limit"),
    413: _error("The request body is larger than the route's limit"),
    429: _error("Too many failed authentications from this address; see Retry-After"),
    422: {
        "model": ValidationErrorBody | ErrorBody,
        "description": "Invalid request: FastAPI's validation shape, or an error body naming the field",
    },
}
NOT_FOUND: Responses = {404: _error("No such object")}
CONFLICT: Responses = {409: _error("The change contradicts the current state")}


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page"
    )


LimitParam = Annotated[int, Query(ge=1, le=500, description="Items per page (1 to 500)")]
CursorParam = Annotated[
    str | None,
    Query(max_length=1000, description="Opaque cursor from the previous page's next_cursor"),
]


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, kinds: tuple[type, ...]) -> list[Any] | None:
    """The values of a cursor made by encode_cursor, checked against `kinds`; 422 if it is not one."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        values = None
    ok = (
        isinstance(values, list)
        and len(values) == len(kinds)
        and all(
            isinstance(v, k) and not (k is int and isinstance(v, bool))
            for v, k in zip(values, kinds, strict=True)
        )
    )
    if not ok:
        raise ApiError(
            422, "invalid request", "cursor: not a cursor returned by this list", extra={"field": "cursor"}
        )
    assert isinstance(values, list)
    return values


def page_of(items: list[T], limit: int, key: Callable[[T], list[Any]]) -> Page[T]:
    """`items` holds up to limit + 1 rows: the extra one only says that there is a next page."""
    if len(items) > limit:
        items = items[:limit]
        return Page[T](items=items, next_cursor=encode_cursor(key(items[-1])))
    return Page[T](items=items, next_cursor=None)


def translate(exc: Exception) -> ApiError:
    """The store's user-facing errors as API errors."""
    if isinstance(exc, NotFoundError):
        return ApiError(404, "not found", str(exc))
    if isinstance(exc, ConflictError):
        return ApiError(409, "conflict", str(exc))
    raise exc


def _database_refusal(exc: psycopg.Error) -> ApiError:
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    if isinstance(exc, psycopg.DataError):
        return ApiError(422, "invalid request", f"a value cannot be stored: {reason}")
    return ApiError(409, "conflict", f"the database refused the change: {reason}")


class SafeRoute(APIRoute):
    """A value the schema lets through but PostgreSQL refuses (a NUL character, a number past
    its column's range, a failed constraint) is the client's error: 422 or 409, never a 500."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                raise _database_refusal(exc) from None

        return guarded


class BearerAuth(SecurityBase):
    """Declares bearer auth in the OpenAPI document; the checking is done by `principal_dependency`."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel(
            bearerFormat="obk_...",
            description="An API key made with `optibridge apikeys create`",
        )
        self.scheme_name = "apiKey"

    async def __call__(self, request: Request) -> str | None:
        return request.headers.get("authorization")


BEARER = BearerAuth()


async def current_principal(
    request: Request, authorization: Annotated[str | None, Depends(BEARER)]
) -> Principal:
    """The caller's API key (401 otherwise). The auth gate (web/apigate.py) has normally checked it
    before the body was read; without the gate (an app built otherwise) it is checked here."""
    checked = principal_in(request.scope)
    if checked is not None:
        return checked
    runtime: Runtime = request.app.state.runtime
    async with runtime.pool.connection() as conn:
        return await authenticate(conn, authorization)


Auth = Annotated[Principal, Depends(current_principal)]


async def tenant_exists(runtime: Runtime, principal: Principal, tenant_id: str) -> None:
    """403 if the key may not see the tenant (whether or not it exists), then 404 if it does not exist."""
    principal.require_tenant(tenant_id)
    async with runtime.pool.connection() as conn:
        found = await tenant_store.exists(conn, tenant_id)
    if not found:
        raise ApiError(404, "not found", f"no tenant {tenant_id!r}")
