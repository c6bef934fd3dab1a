"""Event 14's webhook over HTTP: both casings accepted once, repeats change nothing, and what is
not ours or not an engagement is refused before anything is stored."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from engagementkit import EMAIL, KEY, TENANT, add_tenant, one, payload, webhook_url

from optibridge.intake.engagement_accept import ENGAGEMENT_TASK

from inprocess import Service, running_service


async def counts(svc: Service) -> tuple[int, int, int]:
    e = await one(svc, "SELECT count(*) AS n FROM engagements")
    c = await one(svc, "SELECT count(*) AS n FROM campaigns")
    j = await one(svc, "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = %s", ENGAGEMENT_TASK)
    assert e is not None
    assert c is not None
    assert j is not None
    return int(e["n"]), int(c["n"]), int(j["n"])


async def test_an_engagement_is_recorded_once_whatever_the_casing(db_url: str, test_secret_key: str) -> None:
    async with running_service(db_url, test_secret_key, worker=False) as svc, aiohttp.ClientSession() as http:
        url = await add_tenant(svc, "http://127.0.0.1:9", 2525)
        pascal = payload(77, 7001, "p", ServiceAccount="c2VjcmV0", Extra={"x": 1})
        camel = {k[0].lower() + k[1:]: v for k, v in pascal.items()}
        async with http.post(url, json=camel) as r:
            assert r.status == 202, await r.text()
            assert (await r.json())["outcome"] == "ingest queued"
        assert await counts(svc) == (1, 1, 1)
        for body in (pascal, camel):  # a repeat in either casing
            async with http.post(url, json=body) as r:
                assert r.status == 202
                assert (await r.json())["outcome"] == "duplicate engagement"
        assert await counts(svc) == (1, 1, 1)
        row = await one(svc, "SELECT * FROM engagements")
        assert row is not None
        assert (row["tenant_id"], row["channel_id"], row["campaign_id"], row["engagement_id"]) == (
            TENANT,
            EMAIL,
            77,
            7001,
        )
        assert row["status"] == "received"
        assert row["decryption_key"] is not None
        assert KEY not in bytes(row["decryption_key"])  # stored encrypted
        assert svc.runtime.box.decrypt(bytes(row["decryption_key"])) == KEY
        assert not {k.lower() for k in row["payload"]} & {"decryptionkey", "serviceaccount"}
        campaign = await one(svc, "SELECT status, first_event FROM campaigns WHERE campaign_id = 77")
        assert campaign == {"status": "ingesting", "first_event": 14}
        # Another engagement of the same campaign and channel: recorded, but it ingests nothing.
        async with http.post(url, json=payload(77, 7002, "q")) as r:
            assert r.status == 202
            assert (await r.json())["outcome"] == "duplicate campaign"
        assert await counts(svc) == (2, 1, 1)


async def test_refusals_store_nothing(db_url: str, test_secret_key: str) -> None:
    async with running_service(db_url, test_secret_key, worker=False) as svc, aiohttp.ClientSession() as http:
        url = await add_tenant(svc, "http://127.0.0.1:9", 2525)
        good = payload(78, 8001, "p")
        cases: list[tuple[str, dict[str, object] | bytes, int]] = [
            (webhook_url(svc, "wrong-token"), good, 404),
            (webhook_url(svc, "x" * 300), good, 404),
            (url.replace(f"/{EMAIL}/", "/999/"), good, 404),
            (url.replace(f"/{EMAIL}/", "/abc/"), good, 404),
            (url.replace(f"/{TENANT}/", "/nobody/"), good, 404),
            (url, b"{not json", 400),
            (url, b"", 400),
            (url, b"\xff\xfe", 400),
            (url, good | {"DecryptionKey": None}, 400),  # mandatory for an external bucket
            (url, good | {"ChannelID": 505}, 400),
            (url, good | {"EventTypeID": 1}, 400),
            (url, good | {"CampaignID": "x"}, 400),
            (url, good | {"Padding": "x" * 20_000}, 413),
            (webhook_url(svc, "wrong-token"), good | {"Padding": "x" * 20_000}, 413),
        ]
        for target, body, status in cases:
            kwargs = (
                {"data": body, "headers": {"Content-Type": "application/json"}}
                if isinstance(body, bytes)
                else {"json": body}
            )
            async with http.post(target, **kwargs) as r:  # type: ignore[arg-type]
                assert r.status == status, (target, str(body)[:80], await r.text())
                if status != 404:
                    assert "error" in await r.json()
        assert await counts(svc) == (0, 0, 0)


async def test_a_trickled_body_gets_408_and_stores_nothing(db_url: str, test_secret_key: str) -> None:
    async with running_service(db_url, test_secret_key, worker=False, body_timeout_s=1.0) as svc:
        url = await add_tenant(svc, "http://127.0.0.1:9", 2525)
        path = url.removeprefix(svc.base_url)
        host, port = svc.base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                "Content-Length: 400\r\n\r\n{".encode()
            )
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), timeout=15)
        finally:
            writer.close()
        assert status_line.split()[1] == b"408"
        assert await counts(svc) == (0, 0, 0)


async def test_text_postgresql_cannot_store_is_not_a_500(db_url: str, test_secret_key: str) -> None:
    async with running_service(db_url, test_secret_key, worker=False) as svc, aiohttp.ClientSession() as http:
        url = await add_tenant(svc, "http://127.0.0.1:9", 2525)
        text = json.dumps(payload(79, 9901, "p")).replace(
            '"TimeStamp": "2026-11-29 10:00"', '"TimeStamp": "2026-11-29 10:00\\u0000\\ud800", "X": "\\u0000"'
        )
        assert "\\u0000" in text
        async with http.post(url, data=text, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 202, await r.text()
        bad = text.replace('"BucketName": "optigration-external-eu"', '"BucketName": "a\\u0000b"')
        async with http.post(
            url, data=bad.replace("9901", "9902"), headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
        assert await counts(svc) == (1, 1, 1)
