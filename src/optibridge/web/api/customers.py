"""DELETE one customer's data (the API twin of `optibridge customers forget`). A tenant key reaches
only its own tenant: another tenant's customer answers 403 before anything is read or deleted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from optibridge.core.errors import NotFoundError
from optibridge.retention.forget import forget_customer
from optibridge.runtime import Runtime
from optibridge.web.api.common import NOT_FOUND, Auth, SafeRoute, TenantId, translate

CustomerId = Annotated[
    str, Path(min_length=1, max_length=400, description="Optimove customer id", examples=["C1042"])
]


class ForgetOut(BaseModel):
    tenant: str
    customer: str
    removed: dict[str, int]


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["customers"])

    @api.delete(
        "/tenants/{tenant_id}/customers/{customer_id}",
        summary="Remove one customer's data from every table (suppressions kept hashed)",
        responses=NOT_FOUND,
    )
    async def forget(principal: Auth, tenant_id: TenantId, customer_id: CustomerId) -> ForgetOut:
        principal.require_tenant(tenant_id)
        try:
            removed = await forget_customer(runtime.pool, tenant_id, customer_id)
        except NotFoundError as exc:
            raise translate(exc) from None
        return ForgetOut(tenant=tenant_id, customer=customer_id, removed=removed)

    return api
