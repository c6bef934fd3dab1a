"""Tenants and channels through the API: created and changed through the store with credentials
encrypted, never answered back; provider secrets hidden; config-file tenants left to the file."""

from __future__ import annotations

from typing import Any

from adminkit import ACME_API_KEY, GLOBEX_PASSWORD, SMTP_PASSWORD, TWILIO_TOKEN, Admin, assert_no_secrets

from optibridge.store import tenants

# Valid provider settings: the API validates them as the config file and the CLI do.
TWILIO_SETTINGS = {
    "type": "twilio",
    "account_sid": "AC1",
    "auth_token": TWILIO_TOKEN,
    "from_number": "+15005550006",
}
# A change naming no secret field keeps the stored password (checked with it merged in).
SMTP_WITHOUT_SECRETS = {
    "type": "smtp",
    "host": "smtp2.example.com",
    "from_address": "news@acme.example",
    "username": "mailer",
}


async def test_tenant_and_channels_are_shown_without_any_credential(web: Admin) -> None:
    acme = (await web.call("GET", "/api/v1/tenants/acme")).body
    assert acme["auth_kind"] == "api_key"
    assert "api_key" not in acme
    assert "credentials" not in acme
    email, sms = acme["channels"]
    assert email["settings"] == {"host": "smtp.example.com", "port": 587}
    assert email["has_secrets"] is True
    assert sms["settings"] == {"account_sid": "AC1"}
    channel = await web.call("GET", "/api/v1/tenants/acme/channels/sms")
    assert channel.body["name"] == "sms"
    missing = await web.call("GET", "/api/v1/tenants/acme/channels/push")
    assert (missing.status, missing.body["error"]) == (404, "not found")
    await web.call("GET", "/api/v1/tenants/globex")
    await web.call("GET", "/api/v1/tenants")
    assert_no_secrets(web.texts)


async def test_a_tenant_created_by_api_is_stored_encrypted_and_answered_without_secrets(web: Admin) -> None:
    body = {
        "id": "initech",
        "name": "Initech",
        "api_base_url": "https://api5.example.com",
        "api_key": ACME_API_KEY,
        "channels": [{"name": "sms", "kind": "sms", "channel_id": 505, "provider": TWILIO_SETTINGS}],
    }
    created = await web.call("POST", "/api/v1/tenants", json_body=body)
    assert created.status == 201
    assert created.body["source"] == "api"
    assert created.body["channels"][0]["settings"] == {
        "type": "twilio",
        "account_sid": "AC1",
        "from_number": "+15005550006",
    }
    assert created.body["channels"][0]["has_secrets"] is True
    again = await web.call("POST", "/api/v1/tenants", json_body=body)
    assert again.status == 409
    assert again.body == {"error": "conflict", "detail": "tenant 'initech' already exists"}
    async with web.svc.runtime.pool.connection() as conn:
        row = await (await conn.execute("SELECT credentials FROM tenants WHERE id = 'initech'")).fetchone()
        assert ACME_API_KEY.encode() not in bytes(row["credentials"])
        assert await tenants.credentials(conn, web.svc.runtime.box, "initech") == {"api_key": ACME_API_KEY}
    assert_no_secrets(web.texts)


async def test_update_changes_only_given_fields_and_keeps_omitted_secrets(web: Admin) -> None:
    box = web.svc.runtime.box
    renamed = await web.call("PATCH", "/api/v1/tenants/acme", key="acme", json_body={"name": "Acme 2"})
    assert renamed.status == 200
    assert renamed.body["name"] == "Acme 2"
    channels: list[dict[str, Any]] = [
        {"name": "email", "kind": "email", "channel_id": 504, "provider": SMTP_WITHOUT_SECRETS},
        {"name": "webhook", "kind": "webhook", "channel_id": 507},
    ]
    changed = await web.call(
        "PATCH",
        "/api/v1/tenants/acme",
        json_body={"username": "u", "password": GLOBEX_PASSWORD, "channels": channels},
    )
    assert changed.status == 200
    assert changed.body["auth_kind"] == "login"
    assert [c["name"] for c in changed.body["channels"]] == ["email", "webhook"]
    async with web.svc.runtime.pool.connection() as conn:
        assert await tenants.credentials(conn, box, "acme") == {"username": "u", "password": GLOBEX_PASSWORD}
        row = await (
            await conn.execute(
                "SELECT settings, secrets FROM channels WHERE tenant_id = 'acme' AND name = 'email'"
            )
        ).fetchone()
    assert row["settings"] == SMTP_WITHOUT_SECRETS
    assert box.decrypt_json(row["secrets"]) == {"password": SMTP_PASSWORD}  # kept: no secret field was sent
    bad = await web.call("PATCH", "/api/v1/tenants/acme", json_body={"api_key": "k", "username": "u"})
    assert bad.status == 422
    assert_no_secrets(web.texts)


async def test_a_tenant_from_the_config_file_is_not_changed_by_the_api(web: Admin) -> None:
    async with web.svc.runtime.pool.connection() as conn:
        await conn.execute("UPDATE tenants SET source = 'config' WHERE id = 'globex'")
    reply = await web.call("PATCH", "/api/v1/tenants/globex", json_body={"name": "x"})
    assert reply.status == 409
    assert "config file" in reply.body["detail"]


async def test_delete_removes_the_tenant_and_its_scoped_keys(web: Admin) -> None:
    assert (await web.call("DELETE", "/api/v1/tenants/globex")).status == 204
    assert (await web.call("GET", "/api/v1/tenants/globex")).status == 404
    assert (await web.call("DELETE", "/api/v1/tenants/globex")).status == 404
    assert (await web.call("GET", "/api/v1/whoami", key="globex")).status == 401


async def test_bad_path_and_query_parameters_are_422_or_404_never_500(web: Admin) -> None:
    for path in (
        "/api/v1/tenants/UPPER",
        "/api/v1/tenants?limit=0",
        "/api/v1/tenants?limit=501",
        "/api/v1/tenants?limit=abc",
        "/api/v1/tenants?cursor=%%%",
        "/api/v1/tenants?cursor=WzEsMl0",  # valid base64 and JSON, not one of ours
        "/api/v1/tenants/acme/channels/email/templates/0",
        "/api/v1/tenants/acme/channels/email/templates/99999999999",
        "/api/v1/tenants/acme/channels/email/campaigns/-1",
        "/api/v1/campaigns?status=bogus",
    ):
        reply = await web.call("GET", path)
        assert reply.status == 422, (path, reply.status, reply.text)
    assert (await web.call("GET", "/api/v1/nothing-here")).status == 404
    assert (await web.call("GET", "/api/v1/tenants/acme/channels/email/campaigns/5")).status == 404


async def test_pagination_walks_every_tenant_exactly_once(web: Admin) -> None:
    for i in range(23):
        body = {"id": f"t{i:02d}", "api_base_url": "http://127.0.0.1:9", "api_key": "k"}
        assert (await web.call("POST", "/api/v1/tenants", json_body=body)).status == 201
    seen: list[str] = []
    cursor = None
    for _ in range(20):  # bounded: 25 tenants in pages of 4 is 7 pages
        path = "/api/v1/tenants?limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = (await web.call("GET", path)).body
        assert len(page["items"]) <= 4
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == seen
    assert len(seen) == len(set(seen)) == 25


async def test_a_refused_body_is_never_echoed_back_with_its_secrets(web: Admin) -> None:
    body = {
        "id": "initech",
        "api_base_url": "not a url",
        "api_key": ACME_API_KEY,
        "channels": [
            {"name": "email", "kind": "email", "channel_id": 504, "provider": {"password": SMTP_PASSWORD}}
        ],
    }
    reply = await web.call("POST", "/api/v1/tenants", json_body=body)
    assert reply.status == 422, reply.text
    assert reply.body["detail"]
    assert all(set(e) == {"loc", "msg", "type"} for e in reply.body["detail"])
    assert_no_secrets([reply.text])
    patch = await web.call("PATCH", "/api/v1/tenants/acme", json_body={"api_key": ACME_API_KEY, "x": 1})
    assert patch.status == 422, patch.text
    assert_no_secrets([patch.text])
