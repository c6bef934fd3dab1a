"""Contacts import: a CSV upload (multipart), streamed to a temporary file once the key and tenant
are checked, then loaded by `optibridge.store.contacts` (parsed row by row) in one transaction."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path as FsPath
from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from optibridge.core.errors import ConfigError
from optibridge.runtime import Runtime
from optibridge.store import contacts
from optibridge.web.api.common import (
    NOT_FOUND,
    Auth,
    ErrorBody,
    SafeRoute,
    TenantId,
    tenant_exists,
)
from optibridge.web.auth import ApiError

# The HTTP limit is web/limits.py's (setting max_import_bytes), enforced while the body arrives;
# save_upload checks the same setting again, and this default only guards a caller that has none.
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_FIELDS = 10
UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV with a header row naming customer_id",
                        }
                    },
                }
            }
        },
    }
}


class ImportOut(BaseModel):
    rows: int
    upserted: int
    skipped: int


async def save_upload(upload: UploadFile, limit: int = MAX_UPLOAD_BYTES) -> FsPath:
    """The upload copied to a temporary file (the caller removes it); 413 past `limit` bytes."""
    fd, name = tempfile.mkstemp(prefix="optibridge-contacts-", suffix=".csv")
    path = FsPath(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "too large", f"the file is larger than {limit} bytes")
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return path


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["contacts"])

    @api.post(
        "/tenants/{tenant_id}/contacts/import",
        summary="Load contacts from a CSV file (customer_id, email, phone, device_token, attributes...)",
        responses={**NOT_FOUND, 413: {"model": ErrorBody, "description": "File too large"}},
        openapi_extra=UPLOAD_SCHEMA,
    )
    async def import_contacts(request: Request, principal: Auth, tenant_id: TenantId) -> ImportOut:
        # The body is not a parameter: FastAPI would read it before checking the key. The key was
        # checked (web/apigate.py) before anything was read; the tenant is checked next, and only
        # then is the upload streamed to disk (bounded in size and time by web/limits.py).
        await tenant_exists(runtime, principal, tenant_id)
        async with request.form(max_files=1, max_fields=MAX_FIELDS) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise RequestValidationError(
                    [{"loc": ("body", "file"), "msg": "Field required", "type": "missing"}]
                )
            path = await save_upload(file, runtime.settings.max_import_bytes)
        shown = (file.filename or "upload.csv").replace("\n", " ")[:200]
        try:
            async with runtime.pool.connection() as conn:
                report = await contacts.import_csv(conn, tenant_id, path)
        except ConfigError as exc:
            raise ApiError(
                422, "invalid file", str(exc).replace(str(path), shown), extra={"field": "file"}
            ) from None
        except psycopg.DataError as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ApiError(
                422, "invalid file", f"{shown}: a value cannot be stored: {reason}", extra={"field": "file"}
            ) from None
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        return ImportOut(rows=report.rows, upserted=report.upserted, skipped=report.skipped)

    return api
