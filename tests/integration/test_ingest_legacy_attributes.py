"""Bad customer data fails that customer alone, with a counted reason: a legacy `CustomerAttribute`
value holding the delimiter (never shifting values under the wrong names), an address holding a
control character. Control characters in other attributes are stripped, the customer is sent, and
the campaign says how many were cleaned."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.intake import registration
from optibridge.intake.ingest import ADDRESS_CONTROL_REASON
from optibridge.store import campaigns as campaign_store
from optibridge.store import tenants

from inprocess import running_service

TENANT = "acme"
KEY = "key-acme-1"
EMAIL = 504


@dataclass
class Campaign:
    """What the API shows of an ingested campaign: its failures by reason and its ingest notes."""

    failures: list[tuple[str, int]] = field(default_factory=list)
    notes: tuple[str, ...] = ()


async def ingested_rows(
    db_url: str, test_secret_key: str, seen: Campaign | None = None, **campaign: Any
) -> list[dict[str, Any]]:
    """Ingest one 60-customer campaign made with `campaign` (emulator spec); its message rows."""
    async with (
        running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu,
        running_service(db_url, test_secret_key) as svc,
    ):
        await emu.control.create_tenant(TENANT, api_key=KEY, channels={EMAIL: "Email"})
        config = TenantConfig.model_validate(
            {
                "id": TENANT,
                "api_base_url": emu.base_url,
                "api_key": KEY,
                "channels": [
                    {
                        "name": "email",
                        "kind": "email",
                        "channel_id": EMAIL,
                        "options": {"extra_attributes": ["City", "FirstName"]},
                    }
                ],
            }
        )
        async with svc.runtime.pool.connection() as conn:
            await tenants.add(conn, svc.runtime.box, config, "cli")
        await registration.sync_tenant(svc.runtime, TENANT)
        created = await emu.control.create_campaign(
            TENANT, channel_ids=[EMAIL], customer_count=60, **campaign
        )
        cid = created["campaign_id"]
        await emu.control.notify(TENANT, event_type_ids=[1], campaign_id=cid)
        await svc.wait_idle()
        assert await svc.failed_jobs() == []
        async with svc.runtime.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT customer_id, state, reason, attrs, address FROM messages WHERE campaign_id = %s",
                    (cid,),
                )
            ).fetchall()
            if seen is not None:
                seen.failures = await campaign_store.failures(conn, (TENANT, EMAIL, cid))
                row = await campaign_store.get_campaign(conn, TENANT, "email", cid)
                assert row is not None
                seen.notes = row.ingest_notes
    return list(rows)


async def test_a_delimiter_inside_a_value_fails_only_that_customer(db_url: str, test_secret_key: str) -> None:
    rows = await ingested_rows(
        db_url,
        test_secret_key,
        attribute_format="string",
        attribute_values={"City": ["Paris", "Washington, D.C."], "FirstName": ["Ann", "Bo"]},
    )
    assert len(rows) == 60
    shifted = [r for r in rows if r["reason"] and "requested attributes" in r["reason"]]
    clean = [r for r in rows if r not in shifted]
    assert shifted, "the campaign should hold customers in Washington, D.C."
    assert clean, "and customers elsewhere"
    assert all(r["state"] == "failed" and r["attrs"] == {} for r in shifted)
    assert all("4 values for 3 requested attributes" in r["reason"] for r in shifted)
    # Nobody else was touched: every other customer is in Paris with a real first name.
    assert {r["attrs"]["City"] for r in clean} == {"Paris"}
    assert {r["attrs"]["FirstName"] for r in clean} <= {"Ann", "Bo"}
    assert all(r["state"] != "failed" or r["reason"] == "no address" for r in clean)


async def test_control_characters_refuse_an_address_and_are_stripped_from_other_values(
    db_url: str, test_secret_key: str
) -> None:
    seen = Campaign()
    rows = await ingested_rows(
        db_url,
        test_secret_key,
        seen,
        attribute_values={
            "Email": ["ok@example.com", "bad@example.com\r\nBcc: all@evil.example", "nul\u0000@example.com"],
            "City": ["Paris"],
            "FirstName": ["Ann", "Bo\u0000b\u0007\u009b", "Cy\u001b[2J"],
        },
    )
    assert len(rows) == 60
    refused = [r for r in rows if r["reason"] == ADDRESS_CONTROL_REASON]
    sent = [r for r in rows if r not in refused]
    assert refused, "the campaign should hold customers with a control character in their address"
    assert sent, "and customers without"
    assert all(r["state"] == "failed" and r["attrs"] == {} and r["address"] is None for r in refused)
    # Everyone else is pending, with the control characters gone from their first names.
    assert all(r["state"] == "pending" and r["address"] == "ok@example.com" for r in sent)
    assert {r["attrs"]["FirstName"] for r in sent} <= {"Ann", "Bob", "Cy[2J"}
    assert {r["attrs"]["FirstName"] for r in sent} - {"Ann"}, "some sent names needed cleaning"
    cleaned = sum(r["attrs"]["FirstName"] != "Ann" for r in sent)
    # Counted: the refusals with the campaign's failures, the cleaned rows in a campaign note.
    assert (ADDRESS_CONTROL_REASON, len(refused)) in seen.failures
    assert (
        f"control characters stripped from the attributes of {cleaned} customers (sent cleaned)" in seen.notes
    )
