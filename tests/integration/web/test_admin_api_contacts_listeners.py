"""Contacts import by upload, listeners against the Optimove emulator, and the feedback endpoints
(suppression list, reports) that the API serves from optibridge.feedback / optibridge.reporting."""

from __future__ import annotations

import sys

import aiohttp
import pytest
from adminkit import Admin, seed_campaign

from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.store import listener_tokens


def upload(content: bytes, name: str = "contacts.csv") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", content, filename=name, content_type="text/csv")
    return form


async def test_a_csv_upload_loads_contacts_and_a_bad_file_changes_nothing(web: Admin) -> None:
    good = b"customer_id,email,FirstName\nc1,a@example.com,Ada\nc2,b@example.com,Bob\n"
    reply = await web.call("POST", "/api/v1/tenants/acme/contacts/import", key="acme", data=upload(good))
    assert (reply.status, reply.body) == (200, {"rows": 2, "upserted": 2, "skipped": 0})
    again = await web.call("POST", "/api/v1/tenants/acme/contacts/import", data=upload(good))
    assert again.body == {"rows": 2, "upserted": 0, "skipped": 2}
    bad = b"customer_id,email\nc3,c@example.com\n,d@example.com\n"
    refused = await web.call("POST", "/api/v1/tenants/acme/contacts/import", data=upload(bad, "list.csv"))
    assert refused.status == 422
    assert refused.body["detail"] == "list.csv, line 3: empty customer_id"
    assert "/tmp" not in refused.text
    no_file = await web.call("POST", "/api/v1/tenants/acme/contacts/import")
    assert no_file.status == 422
    other = await web.call("POST", "/api/v1/tenants/globex/contacts/import", key="acme", data=upload(good))
    assert other.status == 403
    async with web.svc.runtime.pool.connection() as conn:
        rows = await (await conn.execute("SELECT customer_id FROM contacts ORDER BY 1")).fetchall()
    assert [r["customer_id"] for r in rows] == ["c1", "c2"]


async def test_listeners_show_ours_and_optimoves_with_the_token_masked_and_sync_registers(web: Admin) -> None:
    async with running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu:
        await emu.control.create_tenant("initech", api_key="initech-key-1", channels={504: "Email"})
        body = {
            "id": "initech",
            "api_base_url": emu.base_url,
            "api_key": "initech-key-1",
            "channels": [{"name": "email", "kind": "email", "channel_id": 504}],
        }
        assert (await web.call("POST", "/api/v1/tenants", json_body=body)).status == 201
        before = (await web.call("GET", "/api/v1/tenants/initech/listeners")).body
        assert before["registered"] == []
        assert before["in_sync"] is False
        assert len(before["wanted"]) == 6
        synced = await web.call("POST", "/api/v1/tenants/initech/listeners/sync")
        assert synced.status == 200, synced.text
        assert len(synced.body["registered"]) == 6
        after = (await web.call("GET", "/api/v1/tenants/initech/listeners")).body
        assert after["in_sync"] is True
        assert all(r["ours"] and r["current"] for r in after["registered"])
        assert all("/optimove/initech/***/" in r["url"] for r in after["registered"])
    async with web.svc.runtime.pool.connection() as conn:
        token = await listener_tokens.current(conn, web.svc.runtime.box, "initech")
    assert not any(token in text for text in web.texts)


async def test_listeners_say_why_when_optimove_does_not_answer(web: Admin) -> None:
    reply = await web.call("GET", "/api/v1/tenants/acme/listeners")
    assert reply.status == 200
    assert reply.body["registered"] is None
    assert reply.body["problem"].startswith("Optimove did not answer")
    failed = await web.call("POST", "/api/v1/tenants/acme/listeners/sync")
    assert failed.status in (502, 504)


async def test_suppressions_and_reports_come_from_the_feedback_and_reporting_modules(web: Admin) -> None:
    from optibridge.feedback import suppression

    async with web.svc.runtime.pool.connection() as conn:
        await suppression.add(conn, "acme", "email", addresses=[f"u{i}@example.com" for i in range(7)])
        await seed_campaign(conn, "acme", "email", 504, 42, {"sent": 3})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        path = "/api/v1/tenants/acme/suppressions?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await web.call("GET", path, key="acme")).body
        seen += [s["value"] for s in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert sorted(seen) == sorted(f"u{i}@example.com" for i in range(7))
    report = await web.call("GET", "/api/v1/tenants/acme/reports/42")
    assert report.status == 200, report.text
    assert report.body[0]["channel"] == "email"
    assert (await web.call("GET", "/api/v1/tenants/acme/reports/43")).status == 404


async def test_a_missing_feature_module_answers_501_with_the_reason(
    web: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optibridge.feedback.suppression", None)  # its import now fails
    reply = await web.call("GET", "/api/v1/tenants/acme/suppressions")
    assert reply.status == 501
    assert reply.body["error"] == "not implemented"
    assert "suppression list is not available" in reply.body["detail"]
