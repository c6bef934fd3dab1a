"""Who am I, and the job queue."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from optibridge.runtime import Runtime
from optibridge.web import queue
from optibridge.web.api.common import Auth, SafeRoute


class WhoAmI(BaseModel):
    key_id: int
    name: str
    tenant_id: str | None = Field(description="null: an admin key")
    admin: bool


class QueueOut(BaseModel):
    queue: str
    due: int = Field(description="Waiting, and due now")
    scheduled: int = Field(description="Waiting for a later time")
    running: int
    stalled: int = Field(description="Running on a worker that stopped heartbeating")
    failed: int
    succeeded: int


class JobOut(BaseModel):
    id: int
    queue: str
    task: str
    status: str
    attempts: int
    scheduled_at: datetime | None
    stalled: bool


class JobsOut(BaseModel):
    live_workers: int
    queues: list[QueueOut]
    attention: list[JobOut] = Field(description="Running, stalled and failed jobs, newest first (up to 50)")


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["system"])

    @api.get("/whoami", summary="The API key making this request")
    async def whoami(principal: Auth) -> WhoAmI:
        return WhoAmI(
            key_id=principal.key_id,
            name=principal.name,
            tenant_id=principal.tenant_id,
            admin=principal.is_admin,
        )

    @api.get("/jobs", summary="The job queue: due, scheduled, running, stalled, failed (admin key)")
    async def jobs(principal: Auth) -> JobsOut:
        principal.require_admin("the job queue")
        async with runtime.pool.connection() as conn:
            stats = await queue.queue_stats(conn)
            workers = await queue.live_workers(conn)
            attention = await queue.attention_jobs(conn)
        return JobsOut(
            live_workers=workers,
            queues=[QueueOut(**s.__dict__) for s in stats],
            attention=[JobOut(**j.__dict__) for j in attention],
        )

    return api
