"""The admin API under /api/v1: tenants, channels, templates, contacts, campaigns, listeners,
suppressions, reports, jobs. Bearer API keys (see optibridge.web.auth); every list is paginated
with `limit` and an opaque `cursor`. See docs/admin-api.md."""

from __future__ import annotations

from fastapi import APIRouter

from optibridge.runtime import Runtime
from optibridge.web.api import (
    campaigns,
    contacts,
    customers,
    engagement_events,
    feedback,
    listeners,
    promotions,
    system,
    templates,
    tenants,
)
from optibridge.web.api.common import COMMON_RESPONSES

PREFIX = "/api/v1"


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(prefix=PREFIX, responses=COMMON_RESPONSES)
    for module in (
        system,
        tenants,
        engagement_events,
        templates,
        contacts,
        customers,
        campaigns,
        listeners,
        promotions,
        feedback,
    ):
        api.include_router(module.router(runtime))
    return api
