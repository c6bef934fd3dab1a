"""The two §10 calls against the emulator: GetProcessedCampaignCustomers pages and
UpdateCustomerPromotionStatus batches (and the emulator's per-call limit)."""

from __future__ import annotations

import pytest

from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.optimove import (
    ApiKeyAuth,
    OptimoveBadRequestError,
    OptimoveClient,
    OptimoveClientConfig,
    RetryPolicy,
)
from optibridge.optimove.promotions import (
    get_processed_customers_page,
    iter_processed_customers,
    update_customer_promotion_status,
)

TENANT = "t1"
KEY = "key-1"


async def test_processed_customers_page_through_the_whole_campaign_and_statuses_are_kept() -> None:
    config = EmulatorConfig(rate_limit_enabled=False, max_promotion_statuses=40)
    async with running_emulator(config) as emu:
        await emu.control.create_tenant(TENANT, api_key=KEY, channels={504: "Email", 505: "SMS"})
        campaign = await emu.control.create_campaign(
            TENANT, customer_count=95, channel_ids=[504, 505], promo_code="A7Bonus"
        )
        cid = int(campaign["campaign_id"])
        client_config = OptimoveClientConfig(
            emu.base_url, ApiKeyAuth(KEY), rate_limit=None, retry=RetryPolicy(max_attempts=1)
        )
        async with OptimoveClient(client_config) as client:
            pages = [p async for p in iter_processed_customers(client, cid, page_size=30, start_skip=10)]
            assert [(p.skip, len(p)) for p in pages] == [(10, 30), (40, 30), (70, 25)]
            ids = [c.customer_id for p in pages for c in p.customers]
            assert ids == [f"C{i}" for i in range(11, 96)]  # once per customer, whatever the channels
            assert {c.promo_codes for p in pages for c in p.customers} == {("A7Bonus",)}
            empty = await get_processed_customers_page(client, 999_999, skip=0, top=10)
            assert len(empty) == 0

            statuses = [(cid_, n % 2 == 0) for n, cid_ in enumerate(ids)]
            calls = await update_customer_promotion_status(client, cid, statuses, per_call=40)
            assert calls == 3
            with pytest.raises(OptimoveBadRequestError) as refused:
                await update_customer_promotion_status(client, cid, statuses, per_call=41)
            assert "at most 40 PromosUpdated" in refused.value.body_excerpt
        kept = {s["customer_id"]: s["status"] for s in await emu.control.promotion_statuses(TENANT)}
        assert kept == dict(statuses)
