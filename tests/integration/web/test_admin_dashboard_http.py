"""The dashboard's session and CSRF rules over plain HTTP: a login sets a signed, HttpOnly,
SameSite=Strict cookie (Secure behind HTTPS); state changes need the session's CSRF token; a
revoked key ends its sessions; and no page carries a credential."""

from __future__ import annotations

import re

import aiohttp
from adminkit import Admin, assert_no_secrets, seed_campaign

from optibridge.web import auth


async def login(
    web: Admin, session: aiohttp.ClientSession, key: str, headers: dict[str, str] | None = None
) -> str:
    async with session.get(web.base_url + "/ui/login") as resp:
        page = await resp.text()
    token = re.search(r'name="login_token" value="([^"]+)"', page)
    assert token is not None
    form = {"api_key": key, "login_token": token.group(1), "next": "/ui/campaigns"}
    async with session.post(
        web.base_url + "/ui/login", data=form, allow_redirects=False, headers=headers or {}
    ) as resp:
        assert resp.status == 303, await resp.text()
        return resp.headers.getall("Set-Cookie")[0]


async def test_login_cookie_flags_and_secure_behind_https(web: Admin) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        cookie = await login(web, s, web.admin_key)
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert "Secure" not in cookie
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        cookie = await login(web, s, web.admin_key, headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in cookie


async def test_state_changes_need_the_csrf_token(web: Admin) -> None:
    async with web.svc.runtime.pool.connection() as conn:
        await seed_campaign(conn, "acme", "email", 504, 42, {"pending": 2})
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await login(web, s, web.admin_key)
        url = web.base_url + "/ui/campaigns/acme/email/42"
        async with s.post(url + "/pause", data={}, allow_redirects=False) as resp:
            assert resp.status == 403
        async with s.post(url + "/pause", data={"csrf_token": "forged"}, allow_redirects=False) as resp:
            assert resp.status == 403
        async with s.get(url) as resp:
            page = await resp.text()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf is not None
        async with s.post(url + "/pause", data={"csrf_token": csrf.group(1)}, allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"].endswith("?outcome=paused")
    async with web.svc.runtime.pool.connection() as conn:
        row = await (await conn.execute("SELECT paused FROM campaigns WHERE campaign_id = 42")).fetchone()
    assert row["paused"] is True


async def test_a_revoked_key_ends_its_sessions_and_pages_show_no_credentials(web: Admin) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await login(web, s, web.acme_key)
        pages = []
        for path in ("/ui/campaigns", "/ui/templates", "/ui/tenants", "/ui/campaigns/rows"):
            async with s.get(web.base_url + path, allow_redirects=False) as resp:
                assert resp.status == 200, path
                assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
                pages.append(await resp.text())
        assert_no_secrets(pages)
        assert "globex" not in pages[2]
        async with web.svc.runtime.pool.connection() as conn:
            await auth.revoke_key(conn, web.keys["acme"])
        async with s.get(web.base_url + "/ui/campaigns", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"].startswith("/ui/login")
        async with s.get(web.base_url + "/ui/campaigns/rows", headers={"X-Requested-With": "fetch"}) as resp:
            assert resp.status == 401


async def test_a_tampered_session_cookie_is_ignored(web: Admin) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        await login(web, s, web.admin_key)
        value = next(c.value for c in jar if c.key == "optibridge_session")
        body, mac = value.split(".")
        forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac
        async with (
            aiohttp.ClientSession() as other,
            other.get(
                web.base_url + "/ui/campaigns", cookies={"optibridge_session": forged}, allow_redirects=False
            ) as resp,
        ):
            assert resp.status == 303
