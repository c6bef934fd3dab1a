"""`optibridge demo`: the whole loop on this machine, with nothing but this package.

It starts an embedded PostgreSQL (a fresh one in `<data-dir>/demo`), the Optimove emulator, an
SMTP sink that writes every mail as a .eml file, an HTTP sink for SMS and push, and the service
(HTTP app + worker). Then, as a real Optimove client and partner would: a demo tenant with email,
SMS and push channels, example templates imported and synced, listeners registered, three
campaigns created in the emulator with per-customer templates and send times in the next minute,
notified, ingested, sent at their time; opens, clicks, unsubscribes and SMS delivery receipts
simulated through the real tracking and receipt endpoints; metrics pushed to the emulator; and a
summary of what we counted beside what the emulator received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from optibridge.bootstrap import open_runtime
from optibridge.catalog import importer
from optibridge.catalog import store as catalog
from optibridge.catalog.tasks import run_sync
from optibridge.core.config import Settings, TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.gcs import RunningGcs, running_gcs
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.feedback.recorder import Recorder
from optibridge.intake import registration
from optibridge.reporting.ondemand import push_now
from optibridge.reporting.show import campaign_overview
from optibridge.runtime import Runtime
from optibridge.service import listen_socket
from optibridge.sinks.http_sink import HttpSink
from optibridge.sinks.smtp_sink import SmtpSink
from optibridge.store import campaigns as campaign_store
from optibridge.store import tenants
from optibridge.web import auth
from optibridge.web.app import create_app

TENANT = "demo"
API_KEY = "demo-optimove-key"
CHANNELS = {"email": 504, "sms": 505, "push": 506}
# Shares of e-mail recipients who open, click (of those who open) and unsubscribe.
OPEN_RATE, CLICK_RATE, UNSUBSCRIBE_RATE = 0.40, 0.35, 0.03
METRICS = ["sent", "delivered", "opened", "clicked", "unsubscribed", "dropped", "spam", "bounced"]


@dataclass
class Campaign:
    channel: str
    campaign_id: int
    customers: int


def _say(line: str) -> None:
    print(line, flush=True)


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done:>6}/{total:<6}"


@contextlib.asynccontextmanager
async def _serve(runtime: Runtime, sock: socket.socket) -> AsyncIterator[tuple[str, Recorder]]:
    app = create_app(runtime)
    server = uvicorn.Server(uvicorn.Config(app, log_level=logging.WARNING, lifespan="on", access_log=False))
    http = asyncio.create_task(server.serve(sockets=[sock]))
    worker = asyncio.create_task(
        runtime.job_app.run_worker_async(
            concurrency=12,
            install_signal_handlers=False,
            additional_context={"runtime": runtime},
            fetch_job_polling_interval=0.5,
            name="demo-worker",
        )
    )
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.tracking_recorder
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        server.should_exit = True
        await http


def _tenant(emu: RunningEmulator, smtp: SmtpSink, http: HttpSink) -> TenantConfig:
    return TenantConfig.model_validate(
        {
            "id": TENANT,
            "name": "Demo client",
            "api_base_url": emu.base_url,
            "api_key": API_KEY,
            "channels": [
                {
                    "name": "email",
                    "kind": "email",
                    "channel_id": CHANNELS["email"],
                    "provider": {
                        "type": "smtp", "host": "127.0.0.1", "port": smtp.port, "tls": "none",
                        "from_address": "news@demo.optibridge.test", "pool_size": 8,
                    },
                    "options": {"lanes": 4, "chunk": 128},
                },
                {
                    "name": "sms",
                    "kind": "sms",
                    "channel_id": CHANNELS["sms"],
                    "provider": {
                        "type": "twilio", "account_sid": "ACdemo", "auth_token": "demo-twilio-token",
                        "from_number": "+15005550006", "base_url": http.base_url,
                    },
                    "options": {"lanes": 2, "chunk": 128},
                },
                {
                    "name": "push",
                    "kind": "push",
                    "channel_id": CHANNELS["push"],
                    "provider": {
                        "type": "json", "url": f"{http.base_url}/json/push",
                        "body_template": '{"to": "{{to}}", "title": "{{subject}}", "body": "{{body}}", '
                        '"id": "{{message_id}}"}',
                    },
                    "options": {"lanes": 2, "chunk": 128},
                },
            ],
        }
    )  # fmt: skip


async def _progress(runtime: Runtime, campaigns: list[Campaign], timeout_s: float) -> None:
    """Print progress bars until every message is final (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    tty = sys.stdout.isatty()
    last_print = 0.0
    while True:
        async with runtime.pool.connection() as conn:
            rows = await campaign_store.tenant_progress(conn, TENANT)
        by_id = {r.campaign_id: r for r in rows}
        parts = []
        finished = True
        for c in campaigns:
            r = by_id.get(c.campaign_id)
            ingested = r.customers if r else 0
            sent = r.sent if r else 0
            done = r is not None and r.status == "ingested" and r.open == 0
            finished &= done
            stage = "done" if done else ("sending" if ingested == c.customers else "ingesting")
            parts.append(f"{c.channel:<5} {_bar(sent, c.customers)} {stage}")
        now = time.monotonic()
        if tty:
            sys.stdout.write("\r" + " | ".join(parts) + "   ")
            sys.stdout.flush()
        elif now - last_print >= 5 or finished:
            _say("  " + " | ".join(parts))
            last_print = now
        if finished:
            if tty:
                sys.stdout.write("\n")
            return
        if now > deadline:
            raise SystemExit("\nerror: the demo campaigns did not finish in time; see the log above")
        await asyncio.sleep(0.5)


_PIXEL = re.compile(r'src="([^"]*/t/o/[^"]+)"')
_CLICK = re.compile(r'href="([^"]*/t/c/[^"]+)"')


async def _engage(smtp: SmtpSink, http_sink: HttpSink, rng: random.Random) -> dict[str, int]:
    """Recipients act through the real endpoints: pixel loads, link clicks, one-click unsubscribes."""
    opened = clicked = unsubscribed = 0
    timeout = aiohttp.ClientTimeout(total=30)
    # A mail client's User-Agent: the tracker discounts HTTP libraries as scanners (docs/feedback.md).
    headers = {
        "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    }
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        gate = asyncio.Semaphore(32)

        statuses: dict[int, int] = {}

        async def hit(method: str, url: str, **kw: Any) -> None:
            async with gate, session.request(method, url, allow_redirects=False, **kw) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        jobs = []
        for mail in smtp.messages:
            parsed = mail.parse()
            body = parsed.get_body(("html",))
            html = body.get_content() if body is not None else ""
            if rng.random() < OPEN_RATE:
                opened += 1
                pixel = _PIXEL.search(html)
                if pixel:
                    jobs.append(hit("GET", pixel.group(1).replace("&amp;", "&")))
                if rng.random() < CLICK_RATE:
                    link = _CLICK.search(html)
                    if link:
                        clicked += 1
                        jobs.append(hit("GET", link.group(1).replace("&amp;", "&")))
            if rng.random() < UNSUBSCRIBE_RATE:
                unsubscribe = parsed["List-Unsubscribe"] or ""
                found = re.search(r"<(https?://[^>]+)>", str(unsubscribe))
                if found:
                    unsubscribed += 1
                    jobs.append(hit("POST", found.group(1), data={"List-Unsubscribe": "One-Click"}))
        await asyncio.gather(*jobs)
        if any(code >= 400 for code in statuses):
            _say(f"  warning: tracking endpoints answered {statuses}")
    receipts = await http_sink.send_status_callbacks("delivered")
    return {"opened": opened, "clicked": clicked, "unsubscribed": unsubscribed, "sms_receipts": receipts}


def _summary(overview: list[dict[str, Any]], emulator_metrics: list[dict[str, Any]]) -> tuple[str, bool]:
    received = {
        (m["campaign_id"], m["channel_id"], m["template_id"], m["metric_id"]): m["value"]
        for m in emulator_metrics
    }
    lines = [f"{'channel':<6} {'template':>8}  " + "  ".join(f"{m:>12}" for m in METRICS)]
    all_match = True
    for item in overview:
        for tpl in item["templates"]:
            cells = []
            for metric_id, name in enumerate(METRICS):
                mid = 9 if name == "bounced" else metric_id
                ours = tpl["counted"].get(name, 0)
                theirs = received.get((item["campaign_id"], item["channel_id"], tpl["template_id"], mid))
                same = theirs is not None and int(theirs) == int(ours)
                all_match &= same
                cells.append(f"{ours:>5}/{'-' if theirs is None else int(theirs):>5}{'' if same else '!':1}")
            lines.append(
                f"{item['channel']:<6} {tpl['template_id']:>8}  " + "  ".join(f"{c:>12}" for c in cells)
            )
    return "\n".join(lines), all_match


async def run_demo(
    settings: Settings,
    customers: int,
    keep_running: bool,
    port: int,
    first_send_s: int = 15,
    event14: bool = False,
) -> bool:
    """`event14`: the e-mail campaign comes by Optimove's Scheduled Campaign Integration flow
    (webhook + Avro files in a GCS emulator, docs/flows/event14.md) instead of event 1."""
    with running_gcs() if event14 else contextlib.nullcontext() as gcs:
        return await _run_demo(settings, customers, keep_running, port, first_send_s, gcs)


async def _run_demo(
    settings: Settings,
    customers: int,
    keep_running: bool,
    port: int,
    first_send_s: int,
    gcs: RunningGcs | None,
) -> bool:
    started = time.monotonic()
    rng = random.Random(42)
    _say(
        f"optibridge demo: {customers:,} e-mail, {customers // 2:,} SMS and {customers // 4:,} push customers"
    )
    mail_dir = settings.data_dir / "mail"
    shutil.rmtree(mail_dir, ignore_errors=True)
    mail_dir.mkdir(parents=True)
    sock = listen_socket("127.0.0.1", port)
    # Listener, tracking and receipt URLs must point at where we actually listen.
    # Everything the demo talks to (emulator, SMTP sink, tracking) is on loopback: the operator
    # setting opens exactly that, nothing wider.
    settings = settings.model_copy(
        update={
            "public_url": f"http://127.0.0.1:{sock.getsockname()[1]}",
            "allow_private_destinations": ["127.0.0.0/8", "::1/128"],
        }
        | ({"gcs_api_endpoint": gcs.endpoint} if gcs is not None else {})
    )
    gcs_endpoint = gcs.endpoint if gcs is not None else None
    async with (
        running_emulator(EmulatorConfig(rate_limit_enabled=False, gcs_endpoint=gcs_endpoint)) as emu,
        SmtpSink(mail_dir=mail_dir) as smtp,
        HttpSink() as http_sink,
        open_runtime(settings, upgrade=True, pool_size=20) as runtime,
        _serve(runtime, sock) as (base_url, recorder),
    ):
        _say(f"  PostgreSQL (embedded) in {settings.pg_dir}; Optimove emulator at {emu.base_url}")
        _say(
            f"  SMTP sink on port {smtp.port} writing mails to {mail_dir}; HTTP sink at {http_sink.base_url}"
        )
        _say(f"  service at {base_url}")
        await emu.control.create_tenant(TENANT, api_key=API_KEY, channels={v: k for k, v in CHANNELS.items()})
        async with runtime.pool.connection() as conn:
            await tenants.add(conn, runtime.box, _tenant(emu, smtp, http_sink), "cli")
            folder = Path(str(resources.files("optibridge.demo").joinpath("templates")))
            files = importer.read_folder(folder, set(CHANNELS))
            for tf in files:
                await catalog.upsert(conn, runtime.job_app, TENANT, tf.channel, tf.spec, create=False)
        for channel in CHANNELS:
            await run_sync(runtime, TENANT, channel)
        plan = await registration.sync_tenant(runtime, TENANT)
        _say(f"  {len(files)} templates imported and synced; {len(plan.register)} listeners registered")

        now = datetime.now(UTC)
        offsets = (first_send_s, first_send_s + 25)
        soon = [(now + timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S") for s in offsets]
        attributes = {
            "FirstName": ["Ann", "Bo", "Chloé", "Dev", "Emi"],
            "Country": ["FR", "DE", "ES", "IT"],
        }
        specs = [
            ("email", customers, [(101, 3), (102, 2)]),
            ("sms", customers // 2, [(201, 1)]),
            ("push", customers // 4, [(301, 1)]),
        ]
        campaigns = []
        for channel, count, templates in specs:
            if channel == "email" and gcs is not None:
                # Event 14: one template and one send time per engagement (its metadata file).
                engagement = await emu.control.request(
                    "POST", f"/tenants/{TENANT}/engagements",
                    {
                        "channel_id": CHANNELS[channel], "customer_count": count, "rows_per_file": 10_000,
                        "template_id": templates[0][0], "scheduled_time": soon[0],
                        "attributes": ["Email", *attributes], "attribute_values": attributes,
                    },
                )  # fmt: skip
                if [c["status"] for c in engagement["calls"]] != [202]:
                    raise RuntimeError(f"the event-14 webhook was not accepted: {engagement['calls']}")
                campaigns.append(Campaign(channel, engagement["campaign_id"], count))
                _say(
                    f"  e-mail campaign by event 14: {len(engagement['files'])} Avro file(s) in GCS; webhook"
                )
                continue
            created = await emu.control.create_campaign(
                TENANT, channel_ids=[CHANNELS[channel]], customer_count=count,
                templates=[{"template_id": t, "weight": w} for t, w in templates],
                scheduled_times=[{"scheduled_time": s, "weight": 1} for s in soon],
                attribute_values=attributes,
            )  # fmt: skip
            campaigns.append(Campaign(channel, created["campaign_id"], count))
            await emu.control.notify(TENANT, event_type_ids=[1], campaign_id=created["campaign_id"])
        _say(f"  campaigns notified; send times {soon[0]} and {soon[1]} UTC (per customer)")
        await _progress(runtime, campaigns, timeout_s=600)

        engaged = await _engage(smtp, http_sink, rng)
        _say(
            f"  simulated: {engaged['opened']:,} opens, {engaged['clicked']:,} clicks, "
            f"{engaged['unsubscribed']:,} unsubscribes, {engaged['sms_receipts']:,} SMS delivery receipts"
        )
        # Opens and clicks wait in the tracking buffer for up to 50 ms; write them before pushing.
        # (Unsubscribes and receipts were written before their requests were answered.)
        await recorder.flush()
        # The worker's periodic tick may have pushed already, while recipients were still acting;
        # an on-demand push sends what is counted now (the tick and it never run at once).
        pushed = [
            p
            for c in campaigns
            for p in await push_now(runtime, c.campaign_id, tenant_id=TENANT, now=datetime.now(UTC))
        ]
        _say(
            f"  metrics pushed to Optimove now for {len(pushed)} campaign channel(s): "
            f"{sum(p.interactions_sent for p in pushed):,} new interactions"
        )

        async with runtime.pool.connection() as conn:
            overview = []
            for c in campaigns:
                for item in await campaign_overview(conn, c.campaign_id, TENANT, now=datetime.now(UTC)):
                    overview.append(item | {"campaign_id": c.campaign_id})
        table, all_match = _summary(overview, await emu.control.metrics(TENANT))
        _say("\nWhat we counted / what Optimove (the emulator) received:")
        _say(table)
        _say(
            ("\nEvery metric matches." if all_match else "\nSome metrics differ (marked !).")
            + f" Demo finished in {time.monotonic() - started:.0f} s. Mails: {mail_dir}"
        )
        _say(f"Dashboard: {base_url}/ui   (admin API: {base_url}/api/v1, API docs: {base_url}/docs)")
        if keep_running:
            # A key to log in with: the dashboard shows each campaign's funnel, the same
            # numbers as the table above (reporting.show.campaign_overview beside what Optimove took).
            async with runtime.pool.connection() as conn:
                _, dashboard_key = await auth.create_key(conn, "demo", None)
            _say(f"Dashboard API key (admin, this demo's database only): {dashboard_key}")
            _say("Running until Ctrl-C ...")
            await asyncio.Event().wait()
        return all_match
