"""Who may call the admin API: no key, a wrong or revoked key get 401; a tenant key is confined to
its tenant (403 elsewhere, before existence is revealed); an admin key sees everything."""

from __future__ import annotations

from adminkit import Admin


async def test_requests_without_a_valid_key_get_401_with_a_bearer_challenge(web: Admin) -> None:
    for key, detail in [
        (None, "missing API key: send 'Authorization: Bearer obk_...'"),
        ("obk_" + "x" * 43, "invalid or revoked API key"),
        ("not-a-key", "invalid API key"),
        (web.revoked_key, "invalid or revoked API key"),
    ]:
        reply = await web.call("GET", "/api/v1/tenants", key=key)
        assert reply.status == 401, key
        assert reply.body == {"error": "unauthorized", "detail": detail}
        assert reply.headers["WWW-Authenticate"] == "Bearer"
    basic = await web.call("GET", "/api/v1/tenants", key=None, headers={"Authorization": "Basic YTpi"})
    assert basic.status == 401
    assert basic.body["detail"] == "the Authorization header must be 'Bearer obk_...'"


async def test_a_tenant_key_sees_only_its_tenant_and_gets_403_elsewhere(web: Admin) -> None:
    listed = await web.call("GET", "/api/v1/tenants", key="acme")
    assert [t["id"] for t in listed.body["items"]] == ["acme"]
    for path in (
        "/api/v1/tenants/globex",
        "/api/v1/tenants/globex/channels",
        "/api/v1/tenants/globex/channels/email/templates",
        "/api/v1/tenants/globex/campaigns",
        "/api/v1/campaigns?tenant_id=globex",
        "/api/v1/tenants/nosuch",  # 403, not 404: a tenant key learns nothing about other tenants
    ):
        reply = await web.call("GET", path, key="acme")
        assert reply.status == 403, path
        assert reply.body["error"] == "forbidden"
        assert "belongs to tenant 'acme'" in reply.body["detail"]
    assert (
        await web.call("PATCH", "/api/v1/tenants/globex", key="acme", json_body={"name": "x"})
    ).status == 403
    assert (await web.call("GET", "/api/v1/tenants/acme", key="acme")).status == 200


async def test_tenant_creation_removal_and_the_job_queue_need_an_admin_key(web: Admin) -> None:
    body = {"id": "initech", "api_base_url": "http://127.0.0.1:9", "api_key": "k"}
    created = await web.call("POST", "/api/v1/tenants", key="acme", json_body=body)
    assert created.status == 403
    assert created.body["detail"] == "adding a tenant needs an admin API key (one with no tenant)"
    assert (await web.call("DELETE", "/api/v1/tenants/acme", key="acme")).status == 403
    assert (await web.call("GET", "/api/v1/jobs", key="acme")).status == 403
    assert (await web.call("GET", "/api/v1/jobs")).status == 200


async def test_an_admin_key_sees_every_tenant_and_whoami_names_the_key(web: Admin) -> None:
    listed = await web.call("GET", "/api/v1/tenants")
    assert [t["id"] for t in listed.body["items"]] == ["acme", "globex"]
    me = await web.call("GET", "/api/v1/whoami", key="acme")
    assert me.body == {"key_id": web.keys["acme"], "name": "acme-ops", "tenant_id": "acme", "admin": False}


async def test_revoking_a_key_takes_effect_on_the_next_request(web: Admin) -> None:
    from optibridge.web import auth

    assert (await web.call("GET", "/api/v1/whoami", key="globex")).status == 200
    async with web.svc.runtime.pool.connection() as conn:
        assert await auth.revoke_key(conn, web.keys["globex"]) is True
        assert await auth.revoke_key(conn, web.keys["globex"]) is False
    assert (await web.call("GET", "/api/v1/whoami", key="globex")).status == 401


async def test_keys_are_stored_only_as_hashes_and_last_use_is_recorded(web: Admin) -> None:
    await web.call("GET", "/api/v1/whoami")
    async with web.svc.runtime.pool.connection() as conn:
        rows = await (await conn.execute("SELECT * FROM api_keys")).fetchall()
    dump = repr(rows)
    for key in (web.admin_key, web.acme_key, web.globex_key, web.revoked_key):
        assert key not in dump
        assert key[12:20] not in dump  # beyond the shown prefix, nothing of the key is stored
    used = {r["name"]: r["last_used_at"] for r in rows}
    assert used["ops"] is not None
    assert used["globex-ops"] is None
