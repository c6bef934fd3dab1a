"""Shared set-up of the event-14 tests: a tenant with one e-mail channel on the SMTP sink."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import fastavro

from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.core.config import TenantConfig
from optibridge.intake.engagement_files import gcs_client
from optibridge.intake.engagement_payload import customers_file_name
from optibridge.store import listener_tokens, tenants

from inprocess import Service

TENANT = "acme"
EMAIL = 504
BUCKET = "optigration-external-eu"
KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()


def tenant_config(api_base_url: str, smtp_port: int) -> TenantConfig:
    return TenantConfig.model_validate(
        {
            "id": TENANT,
            "api_base_url": api_base_url,
            "api_key": "k",
            "channels": [
                {
                    "name": "email",
                    "kind": "email",
                    "channel_id": EMAIL,
                    "provider": {
                        "type": "smtp", "host": "127.0.0.1", "port": smtp_port, "tls": "none",
                        "from_address": "news@acme.test", "pool_size": 8,
                    },
                    "options": {"lanes": 2},
                }
            ],
        }
    )  # fmt: skip


async def add_tenant(
    svc: Service, api_base_url: str, smtp_port: int, template_ids: tuple[int, ...] = (1,)
) -> str:
    """The tenant, its templates; returns the event-14 webhook URL of its e-mail channel."""
    rt = svc.runtime
    async with rt.pool.connection() as conn:
        await tenants.add(conn, rt.box, tenant_config(api_base_url, smtp_port), "cli")
        for tid in template_ids:
            spec = TemplateSpec(
                template_id=tid,
                name=f"E{tid}",
                subject=f"Offer {tid} for [%FirstName%]",
                body=f"<p>Hi {{{{ FirstName }}}}, offer {tid}</p>",
                text_body=f"Hi {{{{ FirstName }}}}, offer {tid}",
            )
            await catalog.upsert(conn, rt.job_app, TENANT, "email", spec, create=True)
        token = await listener_tokens.current(conn, rt.box, TENANT)
    return webhook_url(svc, token)


def webhook_url(svc: Service, token: str, channel: int = EMAIL) -> str:
    return f"{svc.base_url}/optimove/{TENANT}/{token}/channels/{channel}/engagements"


def payload(campaign_id: int, engagement_id: int, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "EventTypeID": 14,
        "TimeStamp": "2026-11-29 10:00",
        "CampaignID": campaign_id,
        "EngagementID": engagement_id,
        "TenantID": 1,
        "BucketName": BUCKET,
        "CustomersFolderPath": f"{prefix}/customers",
        "MetadataFilePath": f"{prefix}/metadata_{engagement_id}",
        "DecryptionKey": KEY_B64,
        "ChannelID": EMAIL,
        **extra,
    }


SCHEMA = {
    "type": "record",
    "name": "Customer",
    "fields": [
        {"name": "CustomerID", "type": ["null", "string"], "default": None},
        {"name": "Email", "type": ["null", "string"], "default": None},
        {"name": "FirstName", "type": ["null", "string"], "default": None},
    ],
}


def put_files(
    endpoint: str,
    prefix: str,
    engagement_id: int,
    metadata: dict[str, Any],
    files: list[list[dict[str, Any]]],
) -> None:
    """Blocking: the metadata and Avro customer files, with the customer-supplied key."""
    client = gcs_client(endpoint)
    bucket = client.bucket(BUCKET)
    if not bucket.exists():
        client.create_bucket(BUCKET)
    bucket.blob(f"{prefix}/metadata_{engagement_id}", encryption_key=KEY).upload_from_string(
        json.dumps(metadata)
    )
    for number, records in enumerate(files, start=1):
        buf = io.BytesIO()
        fastavro.writer(buf, fastavro.parse_schema(SCHEMA), records, codec="deflate")
        buf.seek(0)
        name = customers_file_name(f"{prefix}/customers", number)
        bucket.blob(name, encryption_key=KEY).upload_from_file(buf)


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


async def one(svc: Service, sql: str, *args: Any) -> dict[str, Any] | None:
    async with svc.runtime.pool.connection() as conn:
        row: dict[str, Any] | None = await (await conn.execute(sql, args)).fetchone()
    return row
