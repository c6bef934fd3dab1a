"""The Optimove side of the SMS aggregator flow (reference §12), for tests and the demo.

An *account* is what the tenant copies from Optimove's SMS Config page: a `<BASE_URL>` (here
`<emulator>/sms/<base36 id>`), an app-api-key and a shared secret.

    POST <BASE_URL>/api/v1/aggregator/handshake         app-api-key + x-hub-signature checked (401)
    POST <BASE_URL>/api/v1/aggregator/delivery-report   the same checks; reports recorded
    POST /emulator/aggregator/accounts                  create an account
    GET  /emulator/aggregator/accounts/{id}             its handshake and counts
    POST /emulator/aggregator/accounts/{id}/campaigns   transmit a campaign in signed batches
    GET  /emulator/aggregator/accounts/{id}/delivery-reports

No kinder than the real thing: a wrong key or signature is a 401, a body that is not JSON a 400.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from optibridge.optimove.aggregator import (
    AGGREGATOR_KEY_HEADER,
    APP_KEY_HEADER,
    HANDSHAKE_KEY_FIELD,
    HANDSHAKE_URL_FIELD,
    SIGNATURE_HEADER,
    encode,
    key_matches,
    signature,
    signature_valid,
)

router = APIRouter(tags=["emulator sms aggregator"])
MAX_BODY = 1024 * 1024
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if n == 0:
            return out


@dataclass
class Account:
    account_id: str
    tenant_id: str
    app_api_key: str
    shared_secret: str
    campaign_send_url: str | None = None
    aggregator_key: str | None = None
    handshakes: int = 0
    refused: int = 0
    fail_reports: int = 0  # the next this many delivery reports are answered 503 (a fault to test retries)
    reports: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class AggregatorState:
    accounts: dict[str, Account] = field(default_factory=dict)


def state_of(request: Request) -> AggregatorState:
    st = getattr(request.app.state, "aggregator", None)
    if st is None:
        st = request.app.state.aggregator = AggregatorState()
    assert isinstance(st, AggregatorState)
    return st


async def _verified(request: Request, account_id: str) -> tuple[Account, dict[str, Any]]:
    account = state_of(request).accounts.get(account_id)
    if account is None:
        raise HTTPException(404, "unknown aggregator account")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, "body too large")
    if not key_matches(account.app_api_key, request.headers.get(APP_KEY_HEADER)):
        account.refused += 1
        raise HTTPException(401, f"wrong or missing {APP_KEY_HEADER}")
    if not signature_valid(account.shared_secret, body, request.headers.get(SIGNATURE_HEADER)):
        account.refused += 1
        raise HTTPException(401, f"wrong or missing {SIGNATURE_HEADER}")
    try:
        data = json.loads(body)
    except ValueError:
        raise HTTPException(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "body is not a JSON object")
    return account, data


@router.post("/sms/{account_id}/api/v1/aggregator/handshake")
async def handshake(request: Request, account_id: str) -> JSONResponse:
    account, data = await _verified(request, account_id)
    url, key = data.get(HANDSHAKE_URL_FIELD), data.get(HANDSHAKE_KEY_FIELD)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise HTTPException(400, f"{HANDSHAKE_URL_FIELD} must be an http(s) URL")
    if not isinstance(key, str) or not key:
        raise HTTPException(400, f"{HANDSHAKE_KEY_FIELD} is required")
    account.campaign_send_url, account.aggregator_key = url, key
    account.handshakes += 1
    return JSONResponse({"status": "ok"})


@router.post("/sms/{account_id}/api/v1/aggregator/delivery-report")
async def delivery_report(request: Request, account_id: str) -> JSONResponse:
    account, data = await _verified(request, account_id)
    if account.fail_reports > 0:
        account.fail_reports -= 1
        raise HTTPException(503, "injected fault: try again later")
    kind = data.get("type")
    if not isinstance(kind, dict) or not isinstance(kind.get("status"), str):
        raise HTTPException(400, "type.status is required")
    for name in ("batchId", "customerId", "campaignId"):
        if name not in data:
            raise HTTPException(400, f"{name} is required")
    account.reports.append(data)
    return JSONResponse({"status": "ok"})


# -- control API ------------------------------------------------------------------------------


class AccountIn(BaseModel):
    tenant_id: str = "emulated"
    app_api_key: str | None = None
    shared_secret: str | None = None


class AccountOut(BaseModel):
    account_id: str
    base_url: str
    app_api_key: str
    shared_secret: str
    campaign_send_url: str | None
    handshakes: int
    refused: int
    reports: int


def _out(request: Request, a: Account) -> AccountOut:
    return AccountOut(
        account_id=a.account_id,
        base_url=f"{str(request.base_url).rstrip('/')}/sms/{a.account_id}",
        app_api_key=a.app_api_key,
        shared_secret=a.shared_secret,
        campaign_send_url=a.campaign_send_url,
        handshakes=a.handshakes,
        refused=a.refused,
        reports=len(a.reports),
    )


@router.post("/emulator/aggregator/accounts", status_code=201, tags=["emulator control"])
async def create_account(request: Request, body: AccountIn) -> AccountOut:
    st = state_of(request)
    account_id = base36(secrets.randbits(48))
    st.accounts[account_id] = Account(
        account_id,
        body.tenant_id,
        body.app_api_key or secrets.token_urlsafe(18),
        body.shared_secret or secrets.token_urlsafe(24),
    )
    return _out(request, st.accounts[account_id])


def _account(request: Request, account_id: str) -> Account:
    account = state_of(request).accounts.get(account_id)
    if account is None:
        raise HTTPException(404, "unknown aggregator account")
    return account


class FaultIn(BaseModel):
    fail_reports: int = Field(ge=0, le=1_000_000, description="Answer the next N delivery reports 503")


@router.post("/emulator/aggregator/accounts/{account_id}/faults", tags=["emulator control"])
async def set_faults(request: Request, account_id: str, body: FaultIn) -> AccountOut:
    account = _account(request, account_id)
    account.fail_reports = body.fail_reports
    return _out(request, account)


@router.get("/emulator/aggregator/accounts/{account_id}", tags=["emulator control"])
async def get_account(request: Request, account_id: str) -> AccountOut:
    return _out(request, _account(request, account_id))


class CampaignIn(BaseModel):
    campaign_id: int = Field(gt=0)
    channel_id: int = Field(default=505, gt=0)
    recipients: int = Field(default=10, ge=0, le=1_000_000)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    message: str = Field(
        default="Hello {customer}, your code is {i}", description="{customer} and {i} filled in"
    )
    sender_id: str | None = "Optimove"
    scheduled_time_ms: int | None = Field(default=None, description="Default: now, in epoch milliseconds")
    first_customer: int = 0
    tamper: Literal["none", "signature", "key"] = "none"
    repeat: bool = Field(default=False, description="Send every batch twice (same batchId and requestId)")
    concurrency: int = Field(default=4, ge=1, le=64)
    extra_recipients: list[dict[str, Any]] = Field(
        default_factory=list, description="Appended to the first batch as they are (bad rows for tests)"
    )


class BatchOut(BaseModel):
    batch_id: str
    request_id: str
    recipients: int
    status: int
    answer: str


class CampaignOut(BaseModel):
    campaign_id: int
    batches: list[BatchOut]
    seconds: float


def _recipient(spec: CampaignIn, i: int) -> dict[str, Any]:
    customer = f"agg-{i}"
    return {
        "customerId": customer,
        "mobileNumber": f"+1555{i:07d}",
        "message": spec.message.replace("{customer}", customer).replace("{i}", str(i)),
    }


@router.post("/emulator/aggregator/accounts/{account_id}/campaigns", tags=["emulator control"])
async def transmit(request: Request, account_id: str, spec: CampaignIn) -> CampaignOut:
    """Transmit a campaign to the registered campaignSendUrl: batches of `batch_size`, each signed
    with the shared secret and carrying the aggregator key from the handshake as X-API-Key."""
    account = _account(request, account_id)
    if not account.campaign_send_url or not account.aggregator_key:
        raise HTTPException(409, "no handshake yet: nowhere to send")
    url, key = account.campaign_send_url, account.aggregator_key
    http: aiohttp.ClientSession = request.app.state.http
    scheduled = spec.scheduled_time_ms or int(time.time() * 1000)
    first, last = spec.first_customer, spec.first_customer + spec.recipients
    starts = list(range(first, last, spec.batch_size))
    gate = asyncio.Semaphore(spec.concurrency)
    results: list[BatchOut] = []
    began = time.monotonic()

    async def send(n: int, start: int) -> None:
        recipients = [_recipient(spec, i) for i in range(start, min(start + spec.batch_size, last))]
        if n == 0:
            recipients += spec.extra_recipients
        batch_id = f"{spec.campaign_id}-{n}"
        payload = {
            "batchId": batch_id,
            "requestId": f"req-{account.account_id}-{batch_id}",
            "senderId": spec.sender_id,
            "metadata": {
                "appId": account.account_id,
                "brandId": 1,
                "campaignId": spec.campaign_id,
                "campaignType": "Scheduled",
                "channelId": spec.channel_id,
                "engagementId": spec.campaign_id * 10,
                "isHashed": False,
                "scheduledTime": scheduled,
                "tenantId": account.tenant_id,
            },
            "recipients": recipients,
        }
        body = encode(payload)
        signed = signature(account.shared_secret, body)
        if spec.tamper == "signature":
            signed = signature(account.shared_secret + "x", body)
        headers = {
            "content-type": "application/json",
            AGGREGATOR_KEY_HEADER: key + ("x" if spec.tamper == "key" else ""),
            SIGNATURE_HEADER: signed,
        }
        for _ in range(2 if spec.repeat else 1):
            async with gate:
                try:
                    async with http.post(
                        url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=60)
                    ) as resp:
                        answer = (await resp.text())[:500]
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, answer = 0, f"{type(exc).__name__}: {exc}"[:500]
            results.append(
                BatchOut(
                    batch_id=batch_id,
                    request_id=str(payload["requestId"]),
                    recipients=len(recipients),
                    status=status,
                    answer=answer,
                )
            )

    await asyncio.gather(*(send(n, start) for n, start in enumerate(starts)))
    results.sort(key=lambda b: (int(b.batch_id.rsplit("-", 1)[1]), b.answer))
    return CampaignOut(campaign_id=spec.campaign_id, batches=results, seconds=time.monotonic() - began)


@router.get("/emulator/aggregator/accounts/{account_id}/delivery-reports", tags=["emulator control"])
async def reports(request: Request, account_id: str, offset: int = 0, limit: int = 10_000) -> JSONResponse:
    account = _account(request, account_id)
    return JSONResponse(
        {
            "count": len(account.reports),
            "reports": account.reports[offset : offset + max(0, min(limit, 10_000))],
        }
    )
