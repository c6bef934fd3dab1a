"""Event 14 in the emulator: write an engagement's files to GCS, then POST the webhook.

    POST /emulator/tenants/{id}/engagements   {customer_count, rows_per_file, template_id, ...}

Creates the campaign in the emulator (its customers come from the one generator,
emulator/generator.py, so deliveries and reported metrics can be checked against it), writes
`metadata_<engagementId>` and `customers/customers_fileNNN.deflate.avro` to the GCS emulator
(`EmulatorConfig.gcs_endpoint`, emulator/gcs.py) with a generated customer-supplied key, and
POSTs the webhook in the chosen casing, `duplicates` times.

The webhook URL is the body's `webhook_url`, or the channel's registered listener URL with
`/events` replaced by `/engagements` (optibridge serves both under the same token). Optimove
registers the real one in its UI, not through the API (reference §11).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import os
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from optibridge.emulator.generator import CampaignSpec, GeneratedCampaign, WeightedTemplate, WeightedTime
from optibridge.emulator.state import EmulatorState
from optibridge.intake.engagement_files import gcs_client
from optibridge.intake.engagement_payload import customers_file_name

router = APIRouter(prefix="/emulator", tags=["emulator control"])
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_CHUNK = 5_000  # customers generated at once while a file is written


class EngagementSpec(BaseModel):
    channel_id: int = 504
    campaign_id: int | None = Field(None, description="default: the tenant's next free ID")
    engagement_id: int | None = Field(None, description="default: campaign id x 1000 + channel")
    customer_count: int = Field(100, ge=0, le=10_000_000)
    rows_per_file: int = Field(10_000, ge=1, le=1_000_000, description="Optimove: 10K-100K")
    template_id: int = Field(1, ge=1, le=2**64 - 1)
    template_name: str = "Template"
    scheduled_time: str | None = Field(None, description='UTC "YYYY-MM-DD HH:MM:SS"; default: next hour')
    duration_days: int = Field(7, ge=1, le=366)
    promotions: str = ""
    tags: str = ""
    attributes: list[str] = Field(default_factory=lambda: ["Email", "FirstName"], max_length=100)
    attribute_values: dict[str, list[str]] = Field(default_factory=dict)
    customer_id_field: str = "CustomerID"
    bucket_name: str = "optigration-external-eu"
    webhook_name: str = "optibridge"
    encrypt: bool = True
    casing: Literal["pascal", "camel"] = "pascal"
    webhook_url: str | None = None
    duplicates: int = Field(1, ge=0, le=10, description="webhook POSTs (0: write the files only)")
    seed: int | None = None


class WebhookCall(BaseModel):
    status: int | None
    body: str
    error: str | None = None


class EngagementResult(BaseModel):
    campaign_id: int
    engagement_id: int
    bucket_name: str
    metadata_path: str
    customers_folder: str
    files: list[str]
    decryption_key: str | None
    payload: dict[str, Any]
    webhook_url: str | None
    calls: list[WebhookCall]


def _payload(
    spec: EngagementSpec,
    *,
    campaign_id: int,
    engagement_id: int,
    tenant_number: int,
    folder: str,
    metadata_path: str,
    key: str | None,
    now: datetime,
) -> dict[str, Any]:
    pascal: dict[str, Any] = {
        "EventTypeID": 14,
        "TimeStamp": now.strftime("%Y-%m-%d %H:%M"),
        "CampaignID": campaign_id,
        "EngagementID": engagement_id,
        "TenantID": tenant_number,
        "BucketName": spec.bucket_name,
        "CustomersFolderPath": folder,
        "MetadataFilePath": metadata_path,
        "DecryptionKey": key or "",
        "ChannelID": spec.channel_id,
    }
    if spec.casing == "pascal":
        return pascal
    # The .NET README's camelCase, with its ServiceAccount field (empty: dropped for external buckets).
    camel = {k[0].lower() + k[1:]: v for k, v in pascal.items()}
    camel["serviceAccount"] = ""
    return camel


def _metadata(
    spec: EngagementSpec, campaign_id: int, engagement_id: int, files: int, when: str
) -> dict[str, Any]:
    return {
        "ActionID": 1,
        "ActionName": "Emulated action",
        "CampaignID": campaign_id,
        "CampaignPlanID": campaign_id,
        "ChannelID": spec.channel_id,
        "ChannelName": f"Channel {spec.channel_id}",
        "EngagementID": engagement_id,
        "PlanDetailChannelID": engagement_id,
        "TargetGroupName": "Emulated target group",
        "Duration": spec.duration_days,
        "NumberOfCustomers": spec.customer_count,
        "NumberOfFiles": files,
        "Promotions": spec.promotions,
        "ScheduledTime": when.replace(" ", "T") + "Z",
        "TemplateID": spec.template_id,  # json.dumps keeps a Python int exact, whatever its size
        "TemplateName": spec.template_name,
        "InternalAccountID": 1,
        "AccountName": "Emulated brand",
        "Identifier": spec.webhook_name,
        "Tags": spec.tags,
    }


def avro_schema(id_field: str, attributes: list[str]) -> dict[str, Any]:
    """The record schema we write (UNCONFIRMED upstream): the customer id and string attributes."""
    fields: list[dict[str, Any]] = [{"name": id_field, "type": "string"}]
    fields += [{"name": a, "type": ["null", "string"], "default": None} for a in attributes]
    return {"type": "record", "name": "Customer", "namespace": "optimove.engagement", "fields": fields}


def customer_records(
    data: GeneratedCampaign, id_field: str, attributes: list[str], start: int, stop: int
) -> list[dict[str, Any]]:
    """Customers [start, stop) of the generator as Avro records."""
    out: list[dict[str, Any]] = []
    for skip in range(start, stop, _CHUNK):
        rows = json.loads(data.page_json(skip, min(_CHUNK, stop - skip), attributes))
        for row in rows:
            record: dict[str, Any] = {id_field: row["CustomerID"]}
            record.update(zip(attributes, row.get("CustomerAttributes", []), strict=False))
            out.append(record)
    return out


def write_files(
    endpoint: str,
    spec: EngagementSpec,
    data: GeneratedCampaign,
    *,
    folder: str,
    metadata_path: str,
    metadata: dict[str, Any],
    key: bytes | None,
) -> list[str]:
    """Blocking: the metadata and customer files, uploaded with the customer-supplied key."""
    import fastavro  # here: the emulator starts without it unless event 14 is used

    client = gcs_client(endpoint)
    bucket = client.bucket(spec.bucket_name)
    if not bucket.exists():
        client.create_bucket(spec.bucket_name)
    bucket.blob(metadata_path, encryption_key=key).upload_from_string(
        json.dumps(metadata), content_type="application/json"
    )
    schema = fastavro.parse_schema(avro_schema(spec.customer_id_field, spec.attributes))
    names = []
    files = int(metadata["NumberOfFiles"])
    for number in range(1, files + 1):
        start = (number - 1) * spec.rows_per_file
        stop = min(spec.customer_count, start + spec.rows_per_file)
        buf = io.BytesIO()
        fastavro.writer(
            buf,
            schema,
            customer_records(data, spec.customer_id_field, spec.attributes, start, stop),
            codec="deflate",
        )
        name = customers_file_name(folder, number)
        buf.seek(0)
        bucket.blob(name, encryption_key=key).upload_from_file(buf, content_type="application/octet-stream")
        names.append(name)
    return names


def _webhook_url(state: EmulatorState, tenant_id: str, spec: EngagementSpec) -> str | None:
    if spec.webhook_url:
        return spec.webhook_url
    tenant = state.tenants[tenant_id]
    for event in (13, 1):
        url = tenant.listeners.get((event, spec.channel_id))
        if url and url.rstrip("/").endswith("/events"):
            return url.rstrip("/").removesuffix("/events") + "/engagements"
    return None


async def post_webhook(
    http: aiohttp.ClientSession, url: str, payload: dict[str, Any], timeout_s: float
) -> WebhookCall:
    try:
        async with http.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
            return WebhookCall(status=r.status, body=(await r.text())[:2000])
    except (aiohttp.ClientError, TimeoutError) as exc:
        return WebhookCall(status=None, body="", error=f"{type(exc).__name__}: {exc}"[:500])


@router.post("/tenants/{tenant_id}/engagements", status_code=201)
async def create_engagement(request: Request, tenant_id: str, spec: EngagementSpec) -> EngagementResult:
    """Write an event-14 engagement to GCS and POST its webhook (see the module doc)."""
    state: EmulatorState = request.app.state.emulator
    tenant = state.tenants.get(tenant_id)
    if tenant is None:
        raise HTTPException(404, f"no tenant {tenant_id!r}")
    endpoint = state.config.gcs_endpoint
    if not endpoint:
        raise HTTPException(409, "no GCS emulator configured (EmulatorConfig.gcs_endpoint)")
    now = state.clock.now().astimezone(UTC)
    when = spec.scheduled_time or (
        now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    ).strftime(TIME_FORMAT)
    try:
        campaign = state.create_campaign(
            tenant,
            CampaignSpec(
                campaign_id=spec.campaign_id,
                channel_ids=[spec.channel_id],
                customer_count=spec.customer_count,
                seed=spec.seed,
                templates=[WeightedTemplate(template_id=spec.template_id)],
                scheduled_times=[WeightedTime(scheduled_time=when)],
                attribute_values=spec.attribute_values,
                duration_days=spec.duration_days,
            ),
        )
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    campaign_id = campaign.data.campaign_id
    engagement_id = spec.engagement_id or campaign_id * 1000 + spec.channel_id % 1000
    prefix = f"{now.strftime('%Y-%m-%d %H %M')} {spec.webhook_name} {spec.channel_id} {engagement_id}"
    folder, metadata_path = f"{prefix}/customers", f"{prefix}/metadata_{engagement_id}"
    files = max(1, math.ceil(spec.customer_count / spec.rows_per_file))
    key = os.urandom(32) if spec.encrypt else None
    key_text = base64.b64encode(key).decode() if key else None
    metadata = _metadata(spec, campaign_id, engagement_id, files, when)
    names = await asyncio.to_thread(
        write_files,
        endpoint,
        spec,
        campaign.data,
        folder=folder,
        metadata_path=metadata_path,
        metadata=metadata,
        key=key,
    )
    payload = _payload(
        spec,
        campaign_id=campaign_id,
        engagement_id=engagement_id,
        tenant_number=zlib.crc32(tenant_id.encode()) % 100_000,
        folder=folder,
        metadata_path=metadata_path,
        key=key_text,
        now=now,
    )
    url = _webhook_url(state, tenant_id, spec)
    calls: list[WebhookCall] = []
    if url is not None:
        http: aiohttp.ClientSession = request.app.state.http
        for _ in range(spec.duplicates):
            calls.append(await post_webhook(http, url, payload, state.config.notification_timeout_s))
    return EngagementResult(
        campaign_id=campaign_id,
        engagement_id=engagement_id,
        bucket_name=spec.bucket_name,
        metadata_path=metadata_path,
        customers_folder=folder,
        files=names,
        decryption_key=key_text,
        payload=payload,
        webhook_url=url,
        calls=calls,
    )
