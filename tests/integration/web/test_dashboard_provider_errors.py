"""The dashboard's provider-error table is per tenant: a tenant-scoped viewer sees only its own
tenant's errors and counts (provider names are the tenants' own, and often the same), admin all."""

from __future__ import annotations

import uuid

import aiohttp
from adminkit import Admin
from test_admin_dashboard_http import login

from optibridge.core import telemetry


async def _tenants_page(web: Admin, key: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await login(web, session, key)
        async with session.get(web.base_url + "/ui/tenants", allow_redirects=False) as resp:
            assert resp.status == 200
            return await resp.text()


async def test_each_tenant_sees_only_its_own_provider_errors(web: Admin) -> None:
    mark = uuid.uuid4().hex[:8]  # the counters are process-wide: names no other test uses
    acme_provider, globex_provider, shared = f"acme-smtp-{mark}", f"globex-sms-{mark}", f"twilio-{mark}"
    telemetry.count_provider_error(acme_provider, "permanent", 3, tenant="acme")
    telemetry.count_provider_error(globex_provider, "throttled", 5, tenant="globex")
    telemetry.count_provider_error(shared, "transient", 7, tenant="acme")
    telemetry.count_provider_error(shared, "transient", 11, tenant="globex")

    acme = await _tenants_page(web, web.acme_key)
    assert acme_provider in acme
    assert globex_provider not in acme
    assert '<td class="num">7</td>' in acme  # its own count of the shared provider name
    assert '<td class="num">11</td>' not in acme
    assert '<td class="num">18</td>' not in acme  # not a sum over tenants either

    globex = await _tenants_page(web, web.globex_key)
    assert globex_provider in globex
    assert acme_provider not in globex
    assert '<td class="num">11</td>' in globex
    assert '<td class="num">7</td>' not in globex

    admin = await _tenants_page(web, web.admin_key)
    assert acme_provider in admin
    assert globex_provider in admin
    assert '<td class="num">7</td>' in admin
    assert '<td class="num">11</td>' in admin
