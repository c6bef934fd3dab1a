"""Templates through the API reach the catalog and queue its sync with Optimove; a template that
does not parse is refused with the part, line and reason; previews render for a sample customer."""

from __future__ import annotations

from adminkit import Admin

from optibridge.catalog import store as catalog

BASE = "/api/v1/tenants/acme/channels/email/templates"
GOOD = {
    "template_id": 7,
    "name": "Welcome",
    "subject": "Hello [%FIRST_NAME:friend%]",
    "body": "<p>Hi {{ FIRST_NAME }}, your code is {{ CODE }}</p>",
    "text_body": "Hi {{ FIRST_NAME }}",
}


async def sync_jobs(web: Admin) -> list[dict[str, object]]:
    async with web.svc.runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT args FROM procrastinate_jobs WHERE task_name = %s AND status = 'todo'",
                (catalog.SYNC_TASK,),
            )
        ).fetchall()
    return [r["args"] for r in rows]


async def test_a_created_template_is_in_the_catalog_with_a_sync_job_queued(web: Admin) -> None:
    created = await web.call("POST", BASE, key="acme", json_body=GOOD)
    assert created.status == 201, created.text
    assert created.body["attributes"] == ["FIRST_NAME", "CODE"]
    assert created.body["synced"] is False
    async with web.svc.runtime.pool.connection() as conn:
        stored = await catalog.get(conn, "acme", "email", 7)
    assert (stored.name, stored.version) == ("Welcome", 1)
    assert await sync_jobs(web) == [{"tenant_id": "acme", "channel_name": "email"}]
    dup = await web.call("POST", BASE, json_body=GOOD)
    assert dup.status == 409


async def test_a_broken_template_is_refused_with_part_line_and_reason_and_nothing_is_stored(
    web: Admin,
) -> None:
    broken = dict(GOOD, body="<p>line one</p>\n<p>{% if %}</p>")
    reply = await web.call("POST", BASE, json_body=broken)
    assert reply.status == 422
    assert reply.body["error"] == "invalid template"
    assert (reply.body["part"], reply.body["line"]) == ("html", 2)
    assert reply.body["reason"] == "missing expression"
    assert "html, line 2" in reply.body["detail"]
    no_subject = await web.call("POST", BASE, json_body=dict(GOOD, subject=None))
    assert (no_subject.status, no_subject.body["field"]) == (422, "subject")
    unknown_field = await web.call("POST", BASE, json_body=dict(GOOD, colour="red"))
    assert unknown_field.status == 422
    reserved = await web.call("POST", BASE, json_body=dict(GOOD, template_id=2**31 - 1))
    assert reserved.status in (400, 422), reserved.text  # the aggregator's built-in template's id
    assert "reserved" in reserved.text
    assert await sync_jobs(web) == []
    assert (await web.call("GET", BASE)).body == {"items": [], "next_cursor": None}


async def test_replace_rename_and_delete_each_change_the_catalog(web: Admin) -> None:
    assert (await web.call("POST", BASE, json_body=GOOD)).status == 201
    content = {k: v for k, v in GOOD.items() if k != "template_id"} | {"body": "<p>New {{ CODE }}</p>"}
    replaced = await web.call("PUT", f"{BASE}/7", json_body=content)
    assert (replaced.status, replaced.body["version"], replaced.body["attributes"]) == (
        200,
        2,
        ["FIRST_NAME", "CODE"],
    )
    added = await web.call("PUT", f"{BASE}/8", json_body=content)
    assert added.status == 201
    renamed = await web.call("PATCH", f"{BASE}/7", json_body={"name": "Welcome v2"})
    assert renamed.body["name"] == "Welcome v2"
    assert (await web.call("DELETE", f"{BASE}/7")).status == 204
    assert (await web.call("GET", f"{BASE}/7")).status == 404
    assert [t["template_id"] for t in (await web.call("GET", BASE)).body["items"]] == [8]
    assert (await web.call("PATCH", f"{BASE}/99", json_body={"name": "x"})).status == 404
    assert (
        await web.call("POST", "/api/v1/tenants/acme/channels/nope/templates", json_body=GOOD)
    ).status == 404


async def test_preview_renders_a_stored_template_for_a_sample_customer(web: Admin) -> None:
    await web.call("POST", BASE, json_body=GOOD)
    sample = {"attributes": {"FIRST_NAME": "Ada <3", "CODE": 42}}
    reply = await web.call("POST", f"{BASE}/7/preview", json_body=sample)
    assert reply.status == 200, reply.text
    assert reply.body["parts"] == {
        "subject": "Hello Ada <3",
        "html": "<p>Hi Ada &lt;3, your code is 42</p>",
        "text": "Hi Ada <3",
    }
    missing = await web.call("POST", f"{BASE}/7/preview", json_body={"attributes": {"FIRST_NAME": "Ada"}})
    assert missing.status == 422
    assert missing.body["error"] == "render failed"
    assert "CODE" in missing.body["detail"]
    draft = {"template": dict(GOOD, template_id=99, body="Hi {{ FIRST_NAME | upcase }}"), **sample}
    drafted = await web.call("POST", f"{BASE}/preview", json_body=draft)
    assert drafted.body["parts"]["html"] == "Hi ADA &lt;3"


async def test_template_pages_walk_every_template_once(web: Admin) -> None:
    for i in range(1, 12):
        assert (await web.call("POST", BASE, json_body=dict(GOOD, template_id=i))).status == 201
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        page = (await web.call("GET", f"{BASE}?limit=3" + (f"&cursor={cursor}" if cursor else ""))).body
        seen += [t["template_id"] for t in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == list(range(1, 12))


async def test_json_nested_too_deep_is_refused_not_a_server_error(web: Admin) -> None:
    deep = b'{"attributes": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    reply = await web.call("POST", f"{BASE}/preview", data=deep, headers={"Content-Type": "application/json"})
    assert 400 <= reply.status < 500, (reply.status, reply.text[:300])
    cursor = await web.call("GET", "/api/v1/campaigns?cursor=" + "W" * 4000)
    assert cursor.status == 422
