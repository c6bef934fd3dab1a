"""/metrics shows the documented names with the database's numbers and the hooks' counts;
/livez and /readyz answer load balancers, /readyz turning 503 when the schema is not current."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
from adminkit import Admin, seed_campaign
from prometheus_client.parser import text_string_to_metric_families

from optibridge.core import telemetry
from optibridge.web import metrics

from inprocess import running_service


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_expose_every_documented_name_with_sane_values(web: Admin) -> None:
    async with web.svc.runtime.pool.connection() as conn:
        await seed_campaign(conn, "acme", "email", 504, 42, {"pending": 4, "sent": 6, "failed": 2})
        await seed_campaign(conn, "acme", "sms", 505, 42, {"sent": 3})
        await conn.execute("UPDATE campaigns SET paused = true WHERE channel_id = 505")
    now = datetime.now(UTC)
    telemetry.observe_send_delay("email", now - timedelta(seconds=3), now)
    telemetry.count_sent("smtp", 6)
    telemetry.count_provider_error("smtp", "Transient", tenant="acme")
    telemetry.record_optimove_request("GetLastDataUpdate", 200, 0.12)
    telemetry.record_optimove_request("GetLastDataUpdate", "timeout", 60.0)
    reply = await web.call("GET", "/metrics", key=None)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(reply.text)}
    for name in metrics.metric_names():
        base = name.removesuffix("_total")
        assert base in names or name in names, name
    got = samples(reply.text)
    msg = "optibridge_messages"
    assert got[(msg, (("channel", "email"), ("state", "pending"), ("tenant", "acme")))] == 4
    assert got[(msg, (("channel", "email"), ("state", "sent"), ("tenant", "acme")))] == 6
    assert got[(msg, (("channel", "email"), ("state", "failed"), ("tenant", "acme")))] == 2
    assert got[(msg, (("channel", "sms"), ("state", "sent"), ("tenant", "acme")))] == 3
    assert got[(msg, (("channel", "email"), ("state", "expired"), ("tenant", "globex")))] == 0
    assert got[("optibridge_campaigns", (("status", "ingested"),))] == 2
    assert got[("optibridge_campaigns_paused", ())] == 1
    errors = (("provider", "smtp"), ("reason", "transient"), ("tenant", "acme"))
    assert got[("optibridge_provider_errors_total", errors)] >= 1
    assert (
        got[("optibridge_optimove_requests_total", (("call", "GetLastDataUpdate"), ("status", "timeout")))]
        >= 1
    )
    assert got[("optibridge_send_lateness_seconds_bucket", (("channel", "email"), ("le", "5.0")))] >= 1
    assert 0 <= got[("optibridge_metrics_snapshot_age_seconds", ())] < 5


async def test_job_gauges_count_queued_jobs_and_the_snapshot_is_cached(web: Admin) -> None:
    body = {"template_id": 1, "name": "n", "body": "b"}
    assert (
        await web.call("POST", "/api/v1/tenants/acme/channels/sms/templates", json_body=body)
    ).status == 201
    got = samples((await web.call("GET", "/metrics", key=None)).text)
    assert got[("optibridge_jobs", (("queue", "catalog"), ("status", "todo")))] == 1
    async with web.svc.runtime.pool.connection() as conn:
        await seed_campaign(conn, "acme", "email", 504, 1, {"pending": 5})
    cached = samples((await web.call("GET", "/metrics", key=None)).text)
    pending = ("optibridge_messages", (("channel", "email"), ("state", "pending"), ("tenant", "acme")))
    assert cached[pending] == 0  # within the 5 s cache: the numbers of the previous scrape


async def test_livez_and_readyz_answer_and_readyz_fails_on_a_pending_migration(web: Admin) -> None:
    assert (await web.call("GET", "/livez", key=None)).body == {"status": "alive"}
    ready = await web.call("GET", "/readyz", key=None)
    assert ready.status == 200
    assert ready.body["status"] == "ready"
    async with web.svc.runtime.pool.connection() as conn:
        await conn.execute("DELETE FROM schema_migrations WHERE version = 4")
    not_ready = await web.call("GET", "/readyz", key=None)
    assert not_ready.status == 503
    assert "migrations pending: 0004" in not_ready.body["error"]


async def test_with_a_metrics_token_metrics_need_it_even_from_loopback(
    db_url: str, test_secret_key: str
) -> None:
    async with (
        running_service(db_url, test_secret_key, worker=False, metrics_token="scrape-t0ken") as svc,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"{svc.base_url}/metrics") as bare:
            assert bare.status == 404
            assert "optibridge" not in await bare.text()
        headers = {"Authorization": "Bearer scrape-t0ken"}
        async with session.get(f"{svc.base_url}/metrics", headers=headers) as scraped:
            assert scraped.status == 200
            assert "optibridge_messages" in await scraped.text()
