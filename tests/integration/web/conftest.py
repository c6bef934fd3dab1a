"""The service with the admin API, dashboard and metrics mounted, on a loopback socket, seeded with
two tenants and API keys of every kind (helpers in adminkit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from adminkit import Admin, seed_tenants

from optibridge.web import admin, auth

from inprocess import Service, running_service


@pytest.fixture
async def web(db_url: str, test_secret_key: str) -> AsyncIterator[Admin]:
    """No worker: jobs stay queued, so a test sees exactly what was enqueued."""
    holder: dict[str, Service] = {}

    def mount(app: Any) -> None:
        admin.install(app, app.state.runtime)

    async with running_service(db_url, test_secret_key, worker=False, configure_app=mount) as svc:
        holder["svc"] = svc
        async with svc.runtime.pool.connection() as conn:
            await seed_tenants(conn, svc.runtime.box)
            stored_admin, admin_key = await auth.create_key(conn, "ops", None)
            stored_acme, acme_key = await auth.create_key(conn, "acme-ops", "acme")
            stored_globex, globex_key = await auth.create_key(conn, "globex-ops", "globex")
            stored_revoked, revoked_key = await auth.create_key(conn, "old", None)
            await auth.revoke_key(conn, stored_revoked.id)
        yield Admin(
            svc,
            admin_key,
            acme_key,
            globex_key,
            revoked_key,
            keys={"admin": stored_admin.id, "acme": stored_acme.id, "globex": stored_globex.id},
        )
